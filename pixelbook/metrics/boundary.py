r"""Boundary detection: precision/recall F-measure at ODS and OIS, and AP (BSDS-like, simplified) [BSDS].

[BSDS] Arbeláez, Maire, Fowlkes, Malik, "Contour detection and hierarchical image segmentation", TPAMI
2011, Sec. 3 (benchmark code ``collect_eval_bdry.m``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from .._checks import check_float
from ._common import _binary_mask, _check_prob_map, _counts_at_least, _safe_div, _thresholds

__all__ = ["boundary_f"]


def _disk(radius: float) -> np.ndarray:
    """Footprint of the offsets (dy, dx) with dy² + dx² <= radius² (Euclidean, as the EDT)."""
    r = int(math.floor(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy ** 2 + xx ** 2) <= radius ** 2


@torch.no_grad()
def boundary_f(probs: torch.Tensor, labels: torch.Tensor, tolerance: float = 2, thresholds=33,
               return_curves: bool = False) -> dict:
    r"""Boundary precision/recall F-measure at ODS and OIS, and AP — a **simplified, non-official**
    version of the BSDS benchmark [BSDS].

    At each threshold :math:`t` the predicted boundary is :math:`E_t = \{p \ge t\}`.

    - *precision* counts predicted pixels lying within ``tolerance`` pixels (Euclidean) of some
      ground-truth boundary pixel, using ``scipy.ndimage.distance_transform_edt`` of the ground truth;
    - *recall* counts ground-truth pixels within ``tolerance`` of some pixel of :math:`E_t`. Since
      :math:`\mathrm{dist}(x, E_t) \le \tau \iff \max_{\|y-x\|\le\tau} p(y) \ge t`, one grey dilation of
      ``probs`` by a disk of radius τ answers this for all thresholds at once.

    Counts for all thresholds come from one histogram per image (no loop over thresholds or pixels).
    The distance transform and dilation run in scipy on the CPU (CUDA inputs are copied there); the
    returned curves are moved back to the device of ``probs``.

    **Differences from the official benchmark:** no thinning of the prediction (a 3-px-wide edge is
    not penalised), no one-to-one bipartite matching (several predicted pixels may match one ground
    truth pixel), a single ground truth per image (BSDS has 5–9 annotators), a fixed tolerance in pixels
    (BSDS: ``maxDist = 0.0075 × diagonal`` ≈ 4.3 px on 321×481), no interpolation between thresholds when
    maximising F, and AP as the step-wise area (below) instead of BSDS's 101-point interpolated area.
    Use it for comparisons inside this book, not against published BSDS numbers.

    Definitions (counts summed as in ``collect_eval_bdry.m``; a ratio with a zero denominator is 0):

    - ODS: counts summed over all images per threshold, :math:`F = 2PR/(P+R)`, maximised over thresholds.
    - OIS: each image's best threshold (first maximum of its own F); the counts at those thresholds are
      summed over images and give P, R, F (as BSDS does, not a mean of per-image F).
    - AP: area under the dataset PR curve, :math:`\sum_k (R_k - R_{k-1})\,P_k` over thresholds in
      decreasing order, :math:`R_{-1} = 0` (scikit-learn's ``average_precision_score`` convention).

    Args:
        probs: ``(N, H, W)`` float boundary probabilities in [0, 1].
        labels: ``(N, H, W)`` bool (or 0/1) ground-truth boundary maps; at least one boundary pixel in the batch.
        tolerance: matching distance τ in pixels (≥ 0; 0 = exact position). Default 2 (ours, for 64–128 px
            images; the BSDS default corresponds to ≈ 4 px at 321×481).
        thresholds: number of thresholds ``T`` (``linspace(1/(T+1), 1-1/(T+1), T)`` as BSDS; default 33)
            or an increasing sequence of thresholds in [0, 1].
        return_curves: also return ``thresholds``, ``precision``, ``recall``, ``f`` (dataset curves,
            ``(T,)`` float64 tensors on ``probs``' device) and ``ods_threshold``.

    Returns:
        ``dict(ods=float, ois=float, ap=float)`` (+ curves if asked).

    Raises:
        ValueError / TypeError naming the argument: wrong shapes or dtypes, NaN/Inf, values outside
        [0, 1], non-binary ``labels``, no ground-truth boundary pixel in the whole batch.

    Example:
        >>> import torch
        >>> labels = torch.zeros(1, 8, 8, dtype=torch.bool); labels[0, :, 3] = True
        >>> shifted = torch.zeros(1, 8, 8); shifted[0, :, 4] = 1.0   # one pixel to the right
        >>> boundary_f(shifted, labels, tolerance=2)["ods"], boundary_f(shifted, labels, tolerance=0)["ods"]
        (1.0, 0.0)
    """
    d = _check_prob_map(probs, "probs", "N H W")
    gt = _binary_mask(labels, "labels", "N H W", d, probs, "probs")
    tol = check_float(tolerance, "tolerance", low=0.0)
    thr = _thresholds(thresholds, "thresholds", interior=True)
    return_curves = bool(return_curves)
    if not bool(gt.any()):
        raise ValueError("`labels`: expected at least one boundary pixel in the batch, got none (recall is undefined)")

    p = probs.detach().to("cpu", torch.float64).numpy()
    g = gt.detach().cpu().numpy()
    # Precision side: distance of every pixel to the nearest ground-truth boundary pixel (EDT per image).
    near_gt = np.zeros_like(g)
    for n in range(g.shape[0]):  # one EDT per image; scipy has no batched 2-D EDT
        if g[n].any():
            near_gt[n] = ndimage.distance_transform_edt(~g[n]) <= tol
    # Recall side: max of p over the tolerance disk; a gt pixel is matched at t iff this max >= t.
    p_dil = ndimage.maximum_filter(p, footprint=_disk(tol)[None], mode="constant", cval=-1.0)

    N = p.shape[0]
    pt, pdil = torch.from_numpy(p).reshape(N, -1), torch.from_numpy(p_dil).reshape(N, -1)
    gtt, neart = torch.from_numpy(g).reshape(N, -1), torch.from_numpy(near_gt).reshape(N, -1)
    pred_pos = _counts_at_least(pt, torch.ones_like(gtt), thr)  # sumP: predicted boundary pixels
    pred_hit = _counts_at_least(pt, neart, thr)  # cntP: ... within τ of the ground truth
    gt_hit = _counts_at_least(pdil, gtt, thr)  # cntR: gt pixels within τ of the prediction
    gt_pos = gtt.sum(1, keepdim=True).expand_as(gt_hit)  # sumR

    def prf(cnt_p, sum_p, cnt_r, sum_r):
        P, R = _safe_div(cnt_p, sum_p), _safe_div(cnt_r, sum_r)
        return P, R, _safe_div(2 * P * R, P + R)

    P, R, F = prf(pred_hit.sum(0), pred_pos.sum(0), gt_hit.sum(0), gt_pos.sum(0))
    k_ods = int(torch.argmax(F))
    _, _, F_img = prf(pred_hit, pred_pos, gt_hit, gt_pos)
    best = torch.argmax(F_img, dim=1, keepdim=True)  # first maximum, as `ff(1)` in collect_eval_bdry.m
    _, _, F_ois = prf(*(c.gather(1, best).sum() for c in (pred_hit, pred_pos, gt_hit, gt_pos)))
    R_desc, P_desc = R.flip(0), P.flip(0)  # decreasing threshold = increasing recall
    ap = float((torch.diff(R_desc, prepend=R_desc.new_zeros(1)) * P_desc).sum())
    out = dict(ods=float(F[k_ods]), ois=float(F_ois), ap=ap)
    if return_curves:
        dev = probs.device
        out.update(thresholds=thr.to(dev), precision=P.to(dev), recall=R.to(dev), f=F.to(dev),
                   ods_threshold=float(thr[k_ods]))
    return out
