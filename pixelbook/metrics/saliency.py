r"""Salient-object detection metrics: F-β (max, mean, adaptive), MAE, S-measure, E-measure
(adaptive, mean, max) and the weighted F-measure.

References: [ACHANTA09] Achanta et al., "Frequency-tuned salient region detection", CVPR 2009 (F-β,
β² = 0.3, adaptive threshold 2 × mean saliency). [BORJI15] Borji, Cheng, Jiang, Li, "Salient object
detection: a benchmark", TIP 2015 (PR curves averaged over images, max F from the averaged curve).
[PERAZZI12] Perazzi et al., "Saliency filters", CVPR 2012 (MAE). [FAN17] Fan, Cheng, Liu, Li, Borji,
"Structure-measure: a new way to evaluate foreground maps", ICCV 2017, Eqs. 1–6, and its MATLAB code
``StructureMeasure.m``. [FAN18] Fan, Gong, Cao, Ren, Cheng, Borji, "Enhanced-alignment measure for
binary foreground map evaluation", IJCAI 2018, Eqs. 1–6, and its MATLAB code ``Emeasure.m``.
[MARGOLIN14] Margolin, Zelnik-Manor, Tal, "How to evaluate foreground maps?", CVPR 2014, Eqs. 3–12,
and its MATLAB code ``WFb.m``. [PySODMetrics] lartpang/PySODMetrics (``Fmeasure``, ``MAE``, ``Smeasure``), the
Python port of the MATLAB SOD toolboxes that most recent SOD papers use.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_float
from ._common import _binary_mask, _check_prob_map, _counts_at_least, _safe_div, _thresholds

__all__ = [
    "f_measure", "fbeta_scores", "fbeta_per_image", "mae", "mae_per_image", "s_measure", "s_measure_per_image",
    "e_measure", "e_measure_per_image", "weighted_f_measure", "weighted_f_measure_per_image",
]

# MATLAB's `eps` (= np.spacing(1.0)), the stabiliser of Fan et al.'s StructureMeasure.m [FAN17].
_MATLAB_EPS = float(np.finfo(np.float64).eps)


def _check_sod(probs, labels) -> tuple[torch.Tensor, torch.Tensor]:
    d = _check_prob_map(probs, "probs", "N H W")
    labels = _binary_mask(labels, "labels", "N H W", d, probs, "probs")
    return probs, labels


def f_measure(precision, recall, beta2: float = 0.3):
    r""":math:`F_\beta = \frac{(1+\beta^2)PR}{\beta^2P+R}` elementwise, and 0 where :math:`PR = 0`.

    β² = 0.3 weights precision more than recall ([ACHANTA09]; "like all previous works" [CAS]). Use it
    to turn precision/recall curves accumulated over many batches (:func:`fbeta_per_image` with
    ``return_curves=True``, or :class:`pixelbook.metrics.SaliencyMetrics`) into F.

    Args:
        precision, recall: floats or tensors of the same shape, in [0, 1].
        beta2: :math:`\beta^2` > 0.

    Example:
        >>> round(float(f_measure(0.5, 1.0)), 4)   # 1.3 * 0.5 / (0.15 + 1)
        0.5652
    """
    beta2 = check_float(beta2, "beta2", low=0.0, low_open=True)
    P = torch.as_tensor(precision, dtype=torch.float64)
    R = torch.as_tensor(recall, dtype=torch.float64)
    num = (1 + beta2) * P * R
    den = beta2 * P + R
    return torch.where(num > 0, num / torch.where(num > 0, den, torch.ones_like(den)), torch.zeros_like(num))


@torch.no_grad()
def fbeta_scores(probs: torch.Tensor, labels: torch.Tensor, beta2: float = 0.3, thresholds=256,
                 average: str = "pr", return_curves: bool = False) -> dict:
    r"""F-β of saliency maps: maximum and mean over thresholds of the F-β curve, and adaptive F-β.

    Per image :math:`n` and threshold :math:`t_k` (default 256 thresholds :math:`k/255`, binarisation
    :math:`p \ge t_k`, i.e. PySODMetrics' uint8 histogram), precision :math:`P_{nk} = TP/|\{p\ge t_k\}|`
    and recall :math:`R_{nk} = TP/|G|`, each 0 when its denominator is 0 (an empty prediction has
    precision 0; an image without salient pixels has recall 0, as in [PySODMetrics]).

    ``average`` chooses how images are combined — the two conventions in use differ by up to a few
    points, so report which one you used:

    - ``"pr"`` (default): the **per-image PR curves are averaged over images**, then F is computed from
      the mean curve, :math:`F_k = F_\beta(\bar P_k, \bar R_k)` — the convention of [BORJI15]'s benchmark
      and of the widely used Evaluate-SOD (Hanqer) scripts;
    - ``"f"``: per-image F curves are averaged, :math:`F_k = \frac1N\sum_n F_\beta(P_{nk}, R_{nk})` —
      [PySODMetrics] ``Fmeasure`` / Fan et al.'s MATLAB toolbox.

    ``max_f`` = :math:`\max_k F_k`, ``mean_f`` = :math:`\frac1T\sum_k F_k`. ``adaptive_f`` is per image
    at the adaptive threshold :math:`\min(2\,\mathrm{mean}(p), 1)` [ACHANTA09, PySODMetrics
    ``get_adaptive_threshold``], binarised as :math:`p \ge t`, then averaged over images. Unlike
    PySODMetrics, ``probs`` are *not* min-max normalised per image.

    Args:
        probs: ``(N, H, W)`` float saliency in [0, 1].
        labels: ``(N, H, W)`` bool (or 0/1) ground truth.
        beta2: :math:`\beta^2`, default 0.3 [ACHANTA09].
        thresholds: count ``T ≥ 2`` (``linspace(0, 1, T)``) or an increasing sequence in [0, 1].
        average: ``"pr"`` or ``"f"``, see above.
        return_curves: also return ``thresholds`` ``(T,)`` and the dataset curves ``precision``,
            ``recall``, ``f`` (``(T,)`` float64 tensors). To evaluate a dataset batch by batch use
            :class:`pixelbook.metrics.SaliencyMetrics` (or sum :func:`fbeta_per_image`'s curves).

    Returns:
        ``dict(max_f, mean_f, adaptive_f)`` of python floats (+ the curves as tensors if asked).

    Raises:
        ValueError / TypeError naming the argument: shapes, dtypes, NaN/Inf, ``probs`` outside [0, 1],
        non-binary ``labels``, bad ``beta2``/``thresholds``/``average``.

    Example:
        >>> import torch
        >>> labels = torch.zeros(2, 4, 4, dtype=torch.bool); labels[:, 1:3, 1:3] = True
        >>> scores = fbeta_scores(labels.float(), labels)   # a perfect map
        >>> scores["max_f"], scores["adaptive_f"]
        (1.0, 1.0)
        >>> # mean_f < 1: at t = 0 every pixel is "salient" (P = 4/16, R = 1, F = 0.325/1.075)
        >>> round(scores["mean_f"], 6) == round((255 + 0.325 / 1.075) / 256, 6)
        True
    """
    if average not in ("pr", "f"):
        raise ValueError(f"`average`: expected one of ('pr', 'f'), got {average!r}")
    thr, P, R, F_img, F_ad, beta2 = _fbeta_curves(probs, labels, beta2, thresholds)
    Pm, Rm = P.mean(0), R.mean(0)
    curve = f_measure(Pm, Rm, beta2) if average == "pr" else F_img.mean(0)
    out = dict(max_f=float(curve.max()), mean_f=float(curve.mean()), adaptive_f=float(F_ad.mean()))
    if return_curves:
        out.update(thresholds=thr, precision=Pm, recall=Rm, f=curve)
    return out


@torch.no_grad()
def fbeta_per_image(probs: torch.Tensor, labels: torch.Tensor, beta2: float = 0.3, thresholds=256,
                    return_curves: bool = False) -> dict:
    r"""Per-image F-β of saliency maps: each image's own curve, as :func:`fbeta_scores` defines it.

    Args:
        probs, labels, beta2, thresholds: as in :func:`fbeta_scores`.
        return_curves: also return ``thresholds`` ``(T,)`` and the per-image curves ``precision``,
            ``recall``, ``f``, each ``(N, T)``.

    Returns:
        ``dict(max_f, mean_f, adaptive_f)`` of ``(N,)`` float64 tensors on ``probs``' device (+ curves).

    Example:
        >>> labels = torch.zeros(2, 4, 4, dtype=torch.bool); labels[:, 1:3, 1:3] = True
        >>> fbeta_per_image(labels.float(), labels)["max_f"].tolist()
        [1.0, 1.0]
    """
    thr, P, R, F_img, F_ad, _ = _fbeta_curves(probs, labels, beta2, thresholds)
    out = dict(max_f=F_img.max(1).values, mean_f=F_img.mean(1), adaptive_f=F_ad)
    if return_curves:
        out.update(thresholds=thr, precision=P, recall=R, f=F_img)
    return out


def _fbeta_curves(probs, labels, beta2, thresholds):
    """Validated inputs -> thresholds, per-image P, R, F curves ``(N, T)``, adaptive F ``(N,)``, beta2."""
    probs, labels = _check_sod(probs, labels)
    beta2 = check_float(beta2, "beta2", low=0.0, low_open=True)
    thr = _thresholds(thresholds, "thresholds", interior=False)
    N = probs.shape[0]
    p = probs.detach().reshape(N, -1).double()
    m = labels.reshape(N, -1)
    tp = _counts_at_least(p, m, thr)
    pp = _counts_at_least(p, torch.ones_like(m), thr)
    g = m.sum(1, keepdim=True)
    P, R = _safe_div(tp, pp), _safe_div(tp, g.expand_as(tp))
    F_img = f_measure(P, R, beta2)
    # adaptive threshold per image: min(2 * mean(p), 1)  [PySODMetrics utils.get_adaptive_threshold]
    t_ad = (2 * p.mean(1, keepdim=True)).clamp_max(1.0)
    b = p >= t_ad
    inter = (b & m).sum(1)
    F_ad = f_measure(_safe_div(inter, b.sum(1)), _safe_div(inter, g[:, 0]), beta2)
    return thr.to(p.device), P, R, F_img, F_ad, beta2


@torch.no_grad()
def mae(probs: torch.Tensor, labels: torch.Tensor) -> float:
    r"""Mean absolute error :math:`\frac{1}{HW}\sum_x |S(x) - G(x)|` per image [PERAZZI12], averaged over
    images (as [PySODMetrics] ``MAE``). Computed on the continuous map ``probs`` (the CAS paper's
    definition), not on a binarised one.

    Args:
        probs: ``(N, H, W)`` float saliency in [0, 1].
        labels: ``(N, H, W)`` bool (or 0/1) ground truth.

    Returns:
        python float (:func:`mae_per_image` gives the ``(N,)`` per-image values).

    Example:
        >>> mae(torch.tensor([[[0.5, 1.0], [0.0, 0.0]]]), torch.tensor([[[True, True], [False, True]]]))
        0.375
    """
    return float(mae_per_image(probs, labels).mean())


@torch.no_grad()
def mae_per_image(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The per-image MAE of :func:`mae`: ``(N,)`` float64 tensor on ``probs``' device.

    Example:
        >>> mae_per_image(torch.tensor([[[0.5, 1.0]], [[0.0, 0.0]]]), torch.tensor([[[True, True]], [[False, True]]]))
        tensor([0.2500, 0.5000], dtype=torch.float64)
    """
    probs, labels = _check_sod(probs, labels)
    return (probs.double() - labels.double()).abs().flatten(1).mean(1)


def _matlab_std(x: np.ndarray) -> float:
    """MATLAB ``std`` (normalised by n-1; 0 for a single element)."""
    return float(np.std(x, ddof=1)) if x.size > 1 else 0.0


def _s_object_score(x: np.ndarray) -> float:
    # [FAN17, Eq. 4]: 2 x̄ / (x̄² + 1 + σ_x), + eps as in StructureMeasure.m
    mean = float(x.mean())
    return 2.0 * mean / (mean ** 2 + 1.0 + _matlab_std(x) + _MATLAB_EPS)


def _region_ssim(p: np.ndarray, g: np.ndarray) -> float:
    # [FAN17, Eq. 2] (SSIM without C1, C2) with the special cases of StructureMeasure.m's `ssim`.
    n = p.size
    if n == 0:  # an empty quadrant has weight 0 (MATLAB would give NaN here)
        return 0.0
    x, y = float(p.mean()), float(g.mean())
    sx2 = float(((p - x) ** 2).sum()) / (n - 1 + _MATLAB_EPS)
    sy2 = float(((g - y) ** 2).sum()) / (n - 1 + _MATLAB_EPS)
    sxy = float(((p - x) * (g - y)).sum()) / (n - 1 + _MATLAB_EPS)
    alpha = 4.0 * x * y * sxy
    beta = (x ** 2 + y ** 2) * (sx2 + sy2)
    if alpha != 0:
        return alpha / (beta + _MATLAB_EPS)
    return 1.0 if beta == 0 else 0.0


def _s_measure_one(p: np.ndarray, g: np.ndarray, alpha: float) -> float:
    y = float(g.mean())
    if y == 0:  # all background: the mean "non-saliency" of the prediction
        return 1.0 - float(p.mean())
    if y == 1:  # all foreground
        return float(p.mean())
    # object-aware score [FAN17, Eq. 5]: foreground on p, background on 1 - p, weighted by area
    s_obj = y * _s_object_score(p[g]) + (1 - y) * _s_object_score(1.0 - p[~g])
    # region-aware score [FAN17, Eq. 3]: split at the ground truth's centroid into 4 blocks, weighted by area
    H, W = g.shape
    rows, cols = np.nonzero(g)
    X = int(math.floor(cols.mean() + 1 + 0.5))  # 1-based centroid, MATLAB round (half away from zero)
    Y = int(math.floor(rows.mean() + 1 + 0.5))
    area = H * W
    w1, w2, w3 = X * Y / area, (W - X) * Y / area, X * (H - Y) / area
    w4 = 1.0 - w1 - w2 - w3
    s_reg = (w1 * _region_ssim(p[:Y, :X], g[:Y, :X]) + w2 * _region_ssim(p[:Y, X:], g[:Y, X:])
             + w3 * _region_ssim(p[Y:, :X], g[Y:, :X]) + w4 * _region_ssim(p[Y:, X:], g[Y:, X:]))
    return max(0.0, alpha * s_obj + (1 - alpha) * s_reg)  # [FAN17, Eq. 6], clipped at 0 as the code


@torch.no_grad()
def s_measure(probs: torch.Tensor, labels: torch.Tensor, alpha: float = 0.5) -> float:
    r"""Structure measure :math:`S = \alpha S_o + (1-\alpha) S_r` of Fan et al. [FAN17, Eq. 6], per image,
    averaged over images.

    Follows the authors' MATLAB ``StructureMeasure.m`` (as ported by [PySODMetrics] ``Smeasure``):

    - ground truth all background: :math:`S = 1 - \mathrm{mean}(p)`; all foreground: :math:`S = \mathrm{mean}(p)`;
    - object-aware :math:`S_o = \mu\,O(p|_G) + (1-\mu)\,O(1-p|_{\bar G})`, with :math:`\mu` the foreground
      fraction and :math:`O(x) = 2\bar x/(\bar x^2 + 1 + \sigma_x)` (σ: standard deviation with n−1,
      0 for one pixel, as MATLAB's ``std``) [FAN17, Eqs. 4–5];
    - region-aware :math:`S_r`: the image is split at the ground-truth centroid (1-based, MATLAB
      ``round``) into four blocks, each scored by the SSIM-like
      :math:`4\bar x\bar y\sigma_{xy}/((\bar x^2+\bar y^2)(\sigma_x^2+\sigma_y^2))` (1 when both numerator
      and denominator vanish, 0 when only the numerator does) and weighted by its area [FAN17, Eqs. 1–3];
    - :math:`S` is clipped below at 0.

    A quirk of the original code, kept here: a block whose ground truth *and* prediction are both
    uniform scores 1 in :math:`S_r` even when the prediction is wrong there (numerator and denominator
    both vanish). So an inverted map scores exactly 0 only when every block mixes foreground and
    background; otherwise it keeps some region score.

    Two documented deviations, both at degenerate inputs: the centroid is rounded half away from zero
    as MATLAB (PySODMetrics' ``np.round`` rounds half to even, so the two differ when the centroid lies
    exactly on a half pixel), and an empty block (centroid on the last row/column) contributes 0 where
    the MATLAB code returns NaN. Away from these cases it agrees with PySODMetrics 1.6.2
    ``Smeasure.cal_sm`` to the last bit (checked on a few hundred random maps). Computed in float64 on
    the CPU, one image at a time.

    Args:
        probs: ``(N, H, W)`` float saliency in [0, 1].
        labels: ``(N, H, W)`` bool (or 0/1) ground truth.
        alpha: weight α of the object-aware term, in [0, 1]; 0.5 in [FAN17].

    Returns:
        python float (:func:`s_measure_per_image` gives the ``(N,)`` per-image values).

    Example:
        >>> import torch
        >>> labels = torch.zeros(1, 5, 5, dtype=torch.bool); labels[0, 1:4, 1:4] = True
        >>> round(s_measure(labels.float(), labels), 12), s_measure(1 - labels.float(), labels)  # perfect, inverted
        (1.0, 0.0)
    """
    return float(s_measure_per_image(probs, labels, alpha).mean())


@torch.no_grad()
def s_measure_per_image(probs: torch.Tensor, labels: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """The per-image S-measure of :func:`s_measure`: ``(N,)`` float64 tensor on ``probs``' device.

    Example:
        >>> labels = torch.zeros(2, 5, 5, dtype=torch.bool); labels[:, 1:4, 1:4] = True
        >>> s_measure_per_image(torch.stack([labels[0].float(), 1 - labels[1].float()]), labels).round(decimals=12)
        tensor([1., 0.], dtype=torch.float64)
    """
    probs, labels = _check_sod(probs, labels)
    alpha = check_float(alpha, "alpha", low=0.0, high=1.0)
    p = probs.detach().to("cpu", torch.float64).numpy()
    g = labels.detach().cpu().numpy()
    scores = torch.tensor([_s_measure_one(p[n], g[n], alpha) for n in range(p.shape[0])], dtype=torch.float64)
    return scores.to(probs.device)


def _enhanced_alignment_sum(tp, pp, g, area):
    r""":math:`\sum_x \phi(x)` of [FAN18, Eqs. 3–6] for binary maps, from counts alone.

    A binary map and a binary ground truth take two values each, so the bias matrices
    :math:`\varphi_{FM} = FM - \mu_{FM}`, :math:`\varphi_{GT} = GT - \mu_{GT}` [Eq. 3] and the enhanced
    alignment :math:`\phi = (1 + \xi)^2/4`, :math:`\xi = 2\varphi_{GT}\varphi_{FM}/(\varphi_{GT}^2 +
    \varphi_{FM}^2)` [Eqs. 4–6], take four values — one per (prediction, truth) pair — and the sum is
    four counts times four values. ``tp``, ``pp`` (predicted foreground) broadcast against ``g``
    (ground-truth foreground); ``area`` = H·W. All float64.
    """
    eps = _MATLAB_EPS
    mu_fm, mu_gt = pp / area, g / area
    parts = ((tp, 1 - mu_fm, 1 - mu_gt), (pp - tp, 1 - mu_fm, -mu_gt),
             (g - tp, -mu_fm, 1 - mu_gt), (area - pp - g + tp, -mu_fm, -mu_gt))
    total = torch.zeros_like(tp + g)
    for count, a, b in parts:
        xi = 2 * a * b / (a * a + b * b + eps)
        total = total + count * (1 + xi) ** 2 / 4
    # Emeasure.m: a ground truth without foreground scores the background agreement, one without
    # background the foreground agreement (the alignment term is 0/0 there).
    total = torch.where(g == 0, (area - pp).expand_as(total), total)
    return torch.where(g == area, pp.expand_as(total), total)


@torch.no_grad()
def e_measure_per_image(probs: torch.Tensor, labels: torch.Tensor, thresholds=256,
                        return_curves: bool = False) -> dict:
    r"""Per-image E-measure (enhanced-alignment measure) [FAN18]: adaptive, mean and max over thresholds.

    A map is binarised at each threshold :math:`t_k` (default the 256 values :math:`k/255`, as
    PySODMetrics' uint8 histogram; :math:`p \ge t_k`) and scored
    :math:`E = \sum_x \phi(x) / (HW - 1 + \varepsilon)` — the ``HW - 1`` and MATLAB's ε are the
    authors' ``Emeasure.m`` — with :math:`\phi` the enhanced alignment matrix [FAN18, Eqs. 3–6]:
    1 where prediction and truth agree as much as possible, 0 where they are opposite. A ground
    truth without foreground scores the fraction of predicted background (and one without
    background the fraction of predicted foreground), as the authors' code. The adaptive E uses
    the threshold :math:`\min(2\,\mathrm{mean}(p), 1)`. ``probs`` are not min-max normalised.

    Args:
        probs: ``(N, H, W)`` float saliency in [0, 1].
        labels: ``(N, H, W)`` bool (or 0/1) ground truth.
        thresholds: count ``T >= 2`` (:math:`k/(T-1)`) or an increasing sequence in [0, 1].
        return_curves: also return ``thresholds`` ``(T,)`` and the curves ``e`` ``(N, T)``.

    Returns:
        ``dict(max_e, mean_e, adaptive_e)`` of ``(N,)`` float64 tensors on ``probs``' device.

    Example:
        >>> labels = torch.zeros(1, 4, 4, dtype=torch.bool); labels[:, 1:3, 1:3] = True
        >>> round(float(e_measure_per_image(labels.float(), labels)["adaptive_e"][0]), 4)  # 16/15
        1.0667
    """
    probs, labels = _check_sod(probs, labels)
    thr = _thresholds(thresholds, "thresholds", interior=False)
    N = probs.shape[0]
    area = float(probs[0].numel())
    p = probs.detach().reshape(N, -1).double()
    m = labels.reshape(N, -1)
    tp = _counts_at_least(p, m, thr).double()
    pp = _counts_at_least(p, torch.ones_like(m), thr).double()
    g = m.sum(1, keepdim=True).double()
    e = _enhanced_alignment_sum(tp, pp, g, area) / (area - 1 + _MATLAB_EPS)
    b = p >= (2 * p.mean(1, keepdim=True)).clamp_max(1.0)
    tp_ad = (b & m).sum(1, keepdim=True).double()
    pp_ad = b.sum(1, keepdim=True).double()
    e_ad = _enhanced_alignment_sum(tp_ad, pp_ad, g, area)[:, 0] / (area - 1 + _MATLAB_EPS)
    out = dict(max_e=e.max(1).values, mean_e=e.mean(1), adaptive_e=e_ad)
    if return_curves:
        out.update(thresholds=thr.to(p.device), e=e)
    return out


@torch.no_grad()
def e_measure(probs: torch.Tensor, labels: torch.Tensor, thresholds=256, return_curves: bool = False) -> dict:
    r"""E-measure of a dataset [FAN18]: the per-image curves of :func:`e_measure_per_image` averaged
    over images, then ``max_e`` = the curve's maximum, ``mean_e`` = its mean; ``adaptive_e`` is the
    mean over images of the per-image adaptive E (PySODMetrics ``Emeasure`` conventions).

    E can exceed 1 by a hair: the authors divide by :math:`HW - 1`, not :math:`HW` (a perfect map
    on an image of 16 pixels scores 16/15).

    Returns:
        ``dict(max_e, mean_e, adaptive_e)`` of python floats (+ ``thresholds`` and the mean curve
        ``e`` as tensors if ``return_curves``).

    Example:
        >>> labels = torch.zeros(2, 8, 8, dtype=torch.bool); labels[:, 2:6, 2:6] = True
        >>> scores = e_measure(1 - labels.float(), labels)   # the inverted map: opposite everywhere
        >>> round(scores["adaptive_e"], 12)
        0.0
    """
    per = e_measure_per_image(probs, labels, thresholds, return_curves=True)
    curve = per["e"].mean(0)
    out = dict(max_e=float(curve.max()), mean_e=float(curve.mean()), adaptive_e=float(per["adaptive_e"].mean()))
    if return_curves:
        out.update(thresholds=per["thresholds"], e=curve)
    return out


def _matlab_gaussian(size: int, sigma: float) -> torch.Tensor:
    """MATLAB ``fspecial('gaussian', size, sigma)``: a normalised ``(size, size)`` float64 window."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    h = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma * sigma))
    h = torch.where(h < _MATLAB_EPS * h.max(), torch.zeros_like(h), h)
    return h / h.sum()


@torch.no_grad()
def weighted_f_measure_per_image(probs: torch.Tensor, labels: torch.Tensor, beta2: float = 1.0) -> torch.Tensor:
    r"""Per-image weighted F-measure :math:`F^w_\beta` of Margolin et al. [MARGOLIN14]: ``(N,)`` float64.

    The error :math:`E = |p - G|` is taken on the continuous map (no threshold) and weighted twice
    [MARGOLIN14, Sec. 4], as the authors' ``WFb.m``:

    - dependency: each background pixel takes the error of its nearest foreground pixel (Euclidean
      distance transform), the result is smoothed by a 7×7 Gaussian of σ = 5 with zero padding, and
      on the foreground the smaller of the smoothed and the raw error is kept (the zero padding
      lowers the smoothed error of objects within 3 pixels of the border: an empty map of such an
      object keeps some recall, as in the authors' code and PySODMetrics);
    - importance: a background pixel at distance :math:`d` from the foreground weighs
      :math:`2 - e^{\ln(0.5)\, d / 5}` (errors near the object count less than far ones);

    then :math:`R^w = 1 - \mathrm{mean}_{G}(E_w)`, :math:`P^w = TP^w/(TP^w + FP^w)` with
    :math:`TP^w = |G| - \sum_G E_w`, :math:`FP^w = \sum_{\bar G} E_w`, and
    :math:`F^w = (1+\beta^2)R^wP^w/(R^w + \beta^2P^w)` (MATLAB's ε in both denominators). An image
    without foreground scores 0, as PySODMetrics. The distance transform runs on the CPU
    (``scipy.ndimage``), one image at a time; the rest is batched. Agrees with PySODMetrics 1.6
    ``WeightedFmeasure`` to 1e-8 on random maps (the E-measure agrees with its ``Emeasure`` exactly).

    Args:
        probs: ``(N, H, W)`` float saliency in [0, 1].
        labels: ``(N, H, W)`` bool (or 0/1) ground truth.
        beta2: :math:`\beta^2`, default 1 (``WFb.m``'s ``Beta2 = 1``).

    Example:
        >>> labels = torch.zeros(1, 6, 6, dtype=torch.bool); labels[:, 2:4, 2:4] = True
        >>> round(float(weighted_f_measure_per_image(labels.float(), labels)[0]), 12)   # perfect map
        1.0
    """
    from scipy.ndimage import distance_transform_edt

    probs, labels = _check_sod(probs, labels)
    beta2 = check_float(beta2, "beta2", low=0.0, low_open=True)
    eps = _MATLAB_EPS
    p = probs.detach().to("cpu", torch.float64)
    g = labels.detach().cpu()
    N, H, W = p.shape
    E = (p - g.double()).abs()
    dist = torch.zeros(N, H, W, dtype=torch.float64)
    Et = E.clone()
    for n in range(N):   # the distance transform, per image (scipy); everything else is batched
        if bool(g[n].any()):
            d, (iy, ix) = distance_transform_edt(~g[n].numpy(), return_indices=True)
            dist[n] = torch.from_numpy(d)
            Et[n] = E[n][torch.from_numpy(iy), torch.from_numpy(ix)]   # the nearest foreground's error
    K = _matlab_gaussian(7, 5.0)
    EA = torch.nn.functional.conv2d(Et[:, None], K[None, None], padding=3)[:, 0]
    min_e = torch.where(g & (EA < E), EA, E)
    B = torch.where(g, torch.ones_like(E), 2 - torch.exp(math.log(0.5) / 5 * dist))
    Ew = min_e * B
    fg = g.flatten(1).double()
    n_fg = fg.sum(1)
    ew = Ew.flatten(1)
    tpw = n_fg - (ew * fg).sum(1)
    fpw = (ew * (1 - fg)).sum(1)
    R = 1 - (ew * fg).sum(1) / n_fg.clamp_min(1)
    P = tpw / (eps + tpw + fpw)
    Q = (1 + beta2) * R * P / (eps + R + beta2 * P)
    return torch.where(n_fg > 0, Q, torch.zeros_like(Q)).to(probs.device)


@torch.no_grad()
def weighted_f_measure(probs: torch.Tensor, labels: torch.Tensor, beta2: float = 1.0) -> float:
    r"""Weighted F-measure [MARGOLIN14] of :func:`weighted_f_measure_per_image`, averaged over images.

    Example:
        >>> labels = torch.zeros(1, 12, 12, dtype=torch.bool); labels[:, 5:7, 5:7] = True
        >>> round(weighted_f_measure(torch.zeros(1, 12, 12), labels), 12)   # an empty map finds nothing
        0.0
    """
    return float(weighted_f_measure_per_image(probs, labels, beta2).mean())
