r"""Salient-object detection metrics: F-β (max, mean, adaptive), MAE, S-measure.

References: [ACHANTA09] Achanta et al., "Frequency-tuned salient region detection", CVPR 2009 (F-β,
β² = 0.3, adaptive threshold 2 × mean saliency). [BORJI15] Borji, Cheng, Jiang, Li, "Salient object
detection: a benchmark", TIP 2015 (PR curves averaged over images, max F from the averaged curve).
[PERAZZI12] Perazzi et al., "Saliency filters", CVPR 2012 (MAE). [FAN17] Fan, Cheng, Liu, Li, Borji,
"Structure-measure: a new way to evaluate foreground maps", ICCV 2017, Eqs. 1–6, and its MATLAB code
``StructureMeasure.m``. [PySODMetrics] lartpang/PySODMetrics (``Fmeasure``, ``MAE``, ``Smeasure``), the
Python port of the MATLAB SOD toolboxes that most recent SOD papers use.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._common import _binary_mask, _check_prob_map, _check_real, _counts_at_least, _safe_div, _thresholds

__all__ = [
    "f_measure", "fbeta_scores", "fbeta_per_image", "mae", "mae_per_image", "s_measure", "s_measure_per_image",
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
    beta2 = _check_real(beta2, "beta2", low=0.0, low_open=True)
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
    beta2 = _check_real(beta2, "beta2", low=0.0, low_open=True)
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
    alpha = _check_real(alpha, "alpha", low=0.0, high=1.0)
    p = probs.detach().to("cpu", torch.float64).numpy()
    g = labels.detach().cpu().numpy()
    scores = torch.tensor([_s_measure_one(p[n], g[n], alpha) for n in range(p.shape[0])], dtype=torch.float64)
    return scores.to(probs.device)
