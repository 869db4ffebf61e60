"""Every bad input gets a clear error (issue 9): a table-driven walk over the public API.

Each row is one public function with a valid call. From it the test derives the bad calls the issue
lists — an empty batch, a zero-size image, NaN and Inf in each float tensor, integer tensors where
floats are expected and fractional floats where integers (labels, instance ids, masks) are
expected, a shape that disagrees with the others, and scalars of the wrong type or non-finite —
and classifies what each does:

- ``clear``: a ``ValueError``/``TypeError`` whose message names the argument in backticks;
- ``raw``: any other exception (a torch/numpy error, or a message that does not name it);
- ``silent``: no error at all (a NaN or a wrong answer passes on).

The test requires every case to be ``clear``. ``python tests/test_bad_inputs.py`` prints the counts
per function.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import pixelbook.losses as L
import pixelbook.metrics as M
import pixelbook.ops as O
from pixelbook import std as S

N, C, H, W = 2, 3, 16, 16


def _g():
    return torch.Generator().manual_seed(0)


def logits(c=C):
    return torch.randn(N, c, H, W, generator=_g())


def labels(c=C):
    return torch.randint(0, c, (N, H, W), generator=_g())


def binary(shape=(N, H, W)):
    m = torch.zeros(shape, dtype=torch.bool)
    m[..., 4:11, 5:12] = True
    return m


def probs_map():
    return torch.rand(N, H, W, generator=_g())


def unit_normals():
    v = torch.randn(N, 3, H, W, generator=_g())
    return v / v.norm(dim=1, keepdim=True)


def phi():
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    return (((y - 7.5) ** 2 + (x - 7.5) ** 2).sqrt() - 4.0).expand(N, 1, H, W).clone()


def filters(k=3):
    return torch.softmax(torch.randn(N, k * k, H, W, generator=_g()), 1)


# name -> (function, factory of a valid call's keyword arguments)
TABLE = {
    # losses
    "segmentation_loss": (L.segmentation_loss, lambda: dict(logits=logits(), labels=labels())),
    "affinity_loss": (L.affinity_loss, lambda: dict(logits=logits(), labels=labels())),
    "symmetric_cross_entropy": (L.symmetric_cross_entropy, lambda: dict(logits=logits(), labels=labels())),
    "balanced_bce_loss": (L.balanced_bce_loss, lambda: dict(logits=logits(1), labels=binary().long())),
    "log_depth_loss": (L.log_depth_loss, lambda: dict(pred=torch.rand(N, 1, H, W, generator=_g()) + 1,
                                                      target=torch.rand(N, 1, H, W) + 1)),
    "normal_loss": (L.normal_loss, lambda: dict(pred=torch.randn(N, 3, H, W, generator=_g()), target=unit_normals())),
    "narrow_band_loss": (L.narrow_band_loss, lambda: dict(pred=phi() + 0.5, target=phi())),
    "rmi_loss": (L.rmi_loss, lambda: dict(logits=logits(), labels=labels(), radius=3)),
    "cas_loss": (L.cas_loss, lambda: dict(probs=torch.softmax(logits(), 1), labels=labels(), alpha=0.1)),
    "embedding_loss": (L.embedding_loss, lambda: dict(embeddings=torch.randn(N, 4, H, W, generator=_g()),
                                                      instances=labels(4), alpha=0.5)),
    # metrics
    "confusion_matrix": (M.confusion_matrix, lambda: dict(pred=labels(), labels=labels(), num_classes=C)),
    "mean_iou": (M.mean_iou, lambda: dict(pred=labels(), labels=labels(), num_classes=C)),
    "pixel_accuracy": (M.pixel_accuracy, lambda: dict(pred=labels(), labels=labels())),
    "matched_iou": (M.matched_iou, lambda: dict(pred=labels(), labels=labels(), num_classes=C)),
    "binary_segmentation_scores": (M.binary_segmentation_scores, lambda: dict(pred=binary(), labels=binary())),
    "boundary_f": (M.boundary_f, lambda: dict(probs=probs_map(), labels=binary(), tolerance=2.0)),
    "depth_metrics": (M.depth_metrics, lambda: dict(pred=torch.rand(N, 1, H, W, generator=_g()) + 1,
                                                    target=torch.rand(N, 1, H, W) + 1)),
    "normal_metrics": (M.normal_metrics, lambda: dict(pred=unit_normals(), target=unit_normals().flip(1))),
    "fbeta_scores": (M.fbeta_scores, lambda: dict(probs=probs_map(), labels=binary(), beta2=0.3)),
    "mae": (M.mae, lambda: dict(probs=probs_map(), labels=binary())),
    "s_measure": (M.s_measure, lambda: dict(probs=probs_map(), labels=binary(), alpha=0.5)),
    "e_measure": (M.e_measure, lambda: dict(probs=probs_map(), labels=binary())),
    "weighted_f_measure": (M.weighted_f_measure, lambda: dict(probs=probs_map(), labels=binary(), beta2=1.0)),
    "psnr": (M.psnr, lambda: dict(pred=torch.rand(N, 3, H, W, generator=_g()), target=torch.rand(N, 3, H, W),
                                  data_range=1.0)),
    "ssim": (M.ssim, lambda: dict(pred=torch.rand(N, 3, H, W, generator=_g()), target=torch.rand(N, 3, H, W),
                                  data_range=1.0)),
    "boundary_length": (M.boundary_length, lambda: dict(labels=labels())),
    "count_components": (M.count_components, lambda: dict(labels=labels())),
    "region_similarity": (M.region_similarity, lambda: dict(pred=binary(), labels=binary())),
    "boundary_measure": (M.boundary_measure, lambda: dict(pred=binary(), labels=binary())),
    "end_point_error": (M.end_point_error, lambda: dict(pred=torch.randn(N, 2, H, W, generator=_g()),
                                                       target=torch.randn(N, 2, H, W))),
    # ops
    "sdf_from_mask": (O.sdf_from_mask, lambda: dict(mask=binary())),
    "heaviside": (O.heaviside, lambda: dict(phi=phi(), epsilon=1.0)),
    "dirac": (O.dirac, lambda: dict(phi=phi(), epsilon=1.0)),
    "grad_norm": (O.grad_norm, lambda: dict(phi=phi())),
    "curvature": (O.curvature, lambda: dict(phi=phi())),
    "self_adjoint_conv2d": (O.self_adjoint_conv2d, lambda: dict(u=torch.rand(N, C, H, W, generator=_g()),
                                                                kernel=S.gaussian_kernel(5, 1.0)[None, None])),
    "joint_covariance": (O.joint_covariance, lambda: dict(probs=torch.softmax(logits(), 1),
                                                          target=torch.nn.functional.one_hot(labels(), C)
                                                          .permute(0, 3, 1, 2).float(), radius=3)),
    "region_stats": (O.region_stats, lambda: dict(probs=torch.softmax(logits(), 1), labels=labels())),
    "centroid": (O.centroid, lambda: dict(mask=binary().float())),
    "apply_filter_flow": (O.apply_filter_flow, lambda: dict(image=torch.rand(N, C, H, W, generator=_g()),
                                                            filters=filters(), dilation=1)),
    "expected_flow": (O.expected_flow, lambda: dict(filters=filters(), dilation=1)),
    "flow_warp": (O.flow_warp, lambda: dict(image=torch.rand(N, C, H, W, generator=_g()),
                                            flow=torch.randn(N, 2, H, W))),
    "compose_flows": (O.compose_flows, lambda: dict(outer=torch.randn(N, 2, H, W, generator=_g()),
                                                    inner=torch.randn(N, 2, H, W))),
    "upsample_flow": (O.upsample_flow, lambda: dict(flow=torch.randn(N, 2, H, W, generator=_g()), factor=2)),
    "gated_conv2d": (O.gated_conv2d, lambda: dict(x=torch.randn(N, 4, H, W, generator=_g()),
                                                  weight=torch.randn(5, 4, 3, 3), mask=binary((N, 1, H, W)).float())),
    # methods
    "soft_threshold_dynamics": (S.soft_threshold_dynamics, lambda: dict(logits=logits(), iterations=2, lam=1.0,
                                                                        epsilon=0.5)),
}


#: (function, argument) pairs documented to accept integer tensors where the valid call has floats:
#: a centroid's mask is any non-negative weight map; a gated convolution's mask is 0/1 of any dtype.
ACCEPTS_INTEGER = {("centroid", "mask"), ("gated_conv2d", "mask")}


def bad_calls(good: dict, function: str = ""):
    """(case, argument names allowed in the message, kwargs) for every bad variant of a valid call."""
    tensors = {k: v for k, v in good.items() if torch.is_tensor(v)}
    batch = [k for k, v in tensors.items() if v.ndim >= 3 and v.shape[0] == N]
    if batch:
        yield "empty batch", batch, {**good, **{k: good[k][:0] for k in batch}}
        spatial = [k for k in batch if good[k].shape[-1] == W]
        yield "zero-size image", spatial, {**good, **{k: good[k][..., :0] for k in spatial}}
    for k, v in tensors.items():
        if v.is_floating_point():
            for name, value in (("NaN", float("nan")), ("Inf", float("inf"))):
                bad = v.clone().contiguous()
                bad.view(-1)[0] = value
                yield f"{name} in `{k}`", [k], {**good, k: bad}
            if (function, k) not in ACCEPTS_INTEGER:
                yield f"integer `{k}`", [k], {**good, k: v.round().long()}
        else:
            yield f"fractional float `{k}`", [k], {**good, k: v.double() + 0.5}
        if len(batch) >= 2 and k in batch:
            yield f"mismatched `{k}`", batch, {**good, k: v[..., :-1]}
    for k, v in good.items():
        if isinstance(v, bool) or torch.is_tensor(v):
            continue
        if isinstance(v, int):
            yield f"`{k}`=2.5", [k], {**good, k: 2.5}
            yield f"`{k}`=True", [k], {**good, k: True}
        elif isinstance(v, float):
            yield f"`{k}`=NaN", [k], {**good, k: float("nan")}
            yield f"`{k}`='1'", [k], {**good, k: "1"}


def outcome(fn, kwargs, names) -> tuple[str, str]:
    try:
        fn(**kwargs)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        return ("clear" if any(f"`{n}`" in msg for n in names) else "raw"), f"{type(exc).__name__}: {msg[:150]}"
    except Exception as exc:  # noqa: BLE001 - classifying is the point
        return "raw", f"{type(exc).__name__}: {str(exc)[:150]}"
    return "silent", ""


CASES = [(name, case, names, kwargs) for name, (fn, make) in TABLE.items() for case, names, kwargs in
         bad_calls(make(), name)]


@pytest.mark.parametrize("name", sorted(TABLE))
def test_valid_call_runs(name):
    fn, make = TABLE[name]
    fn(**make())


@pytest.mark.parametrize("name,case,names,kwargs", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_gets_a_clear_error(name, case, names, kwargs):
    kind, message = outcome(TABLE[name][0], kwargs, names)
    assert kind == "clear", f"{name}, {case}: {kind} ({message or 'no error'})"


def test_the_table_covers_every_kind_of_bad_input():
    kinds = Counter(case.split(" `")[0].split("`")[0] for _, case, _, _ in CASES)
    assert len(TABLE) >= 40  # the losses, metrics, ops and STD entry points listed above
    for kind in ("empty batch", "zero-size image", "NaN in", "Inf in", "integer", "fractional float", "mismatched"):
        assert any(k.startswith(kind) for k in kinds), kind


if __name__ == "__main__":
    counts = Counter()
    for name, case, names, kwargs in CASES:
        kind, message = outcome(TABLE[name][0], kwargs, names)
        counts[kind] += 1
        if kind != "clear":
            print(f"{kind:6s} {name}: {case}: {message}")
    print(dict(counts), "of", len(CASES), "cases over", len(TABLE), "functions")
