"""One vocabulary across the package (CONTRIBUTING.md, "Vocabulary"): argument names, the one
``ignore_index`` default, and the convention for an all-ignored batch (losses: 0 with a zero
gradient; metrics: a ValueError naming the argument)."""

import importlib
import inspect
import pkgutil

import pytest
import torch
import torch.nn.functional as F

import pixelbook
from pixelbook import losses as L
from pixelbook import metrics as M
from pixelbook._checks import IGNORE_INDEX

# The packages and method modules whose public API the vocabulary governs.
GOVERNED = ("models", "losses", "metrics", "ops", "levelset", "std", "rmi", "cas", "multitask")
# Names the vocabulary replaced, each with its replacement.
RETIRED = {"preds": "pred", "gt": "target / labels", "targets": "target / labels", "pred_prob": "probs",
           "input": "logits", "pretrained": "weights_backbone", "pred_log_depth": "pred",
           "masks": "labels (ground truth) / mask (a shape)"}


def _public_callables():
    seen = set()
    for top in GOVERNED:
        package = importlib.import_module(f"pixelbook.{top}")
        modules = [package] + [importlib.import_module(f"{package.__name__}.{m.name}")
                               for m in pkgutil.iter_modules(getattr(package, "__path__", [])) if not m.name.startswith("_")]
        for module in modules:
            for name in getattr(module, "__all__", []):
                obj = getattr(module, name)
                if id(obj) in seen or not callable(obj) or name in M._STATEFUL:
                    continue
                seen.add(id(obj))
                yield f"{module.__name__}.{name}", obj
                if inspect.isclass(obj):
                    for meth in ("forward", "update"):
                        if meth in vars(obj):
                            yield f"{module.__name__}.{name}.{meth}", getattr(obj, meth)


def _parameters(obj):
    try:
        return inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return {}


CALLABLES = list(_public_callables())


def test_the_walk_covers_the_api():
    names = {n.rsplit(".", 1)[-1] for n, _ in CALLABLES}
    assert {"rmi_loss", "cas_loss", "mean_iou", "sdf_from_mask", "PixelNet", "soft_threshold_dynamics"} <= names
    assert len(CALLABLES) > 120


def test_every_ignore_index_defaults_to_the_one_constant():
    wrong = [f"{name}(ignore_index={p.default!r})" for name, obj in CALLABLES
             for p in [_parameters(obj).get("ignore_index")] if p is not None and p.default is not IGNORE_INDEX]
    assert IGNORE_INDEX == 255
    assert wrong == []


def test_no_retired_argument_names():
    found = [f"{name}({arg}) -> {RETIRED[arg]}" for name, obj in CALLABLES for arg in _parameters(obj) if arg in RETIRED]
    assert found == []


def test_metric_classes_use_the_vocabulary():
    assert list(inspect.signature(M.MeanIoU.update).parameters)[1:] == ["pred", "labels"]
    assert list(inspect.signature(M.DepthMetrics.update).parameters)[1:] == ["pred", "target", "valid"]
    assert list(inspect.signature(M.SaliencyMetrics.update).parameters)[1:] == ["probs", "labels"]
    assert inspect.signature(M.MeanIoU).parameters["ignore_index"].default == IGNORE_INDEX


# ------------------------------------------------------------------------------------------------
# An all-ignored batch: every loss gives 0 with a zero gradient
# ------------------------------------------------------------------------------------------------

def _void_labels(n=2, h=8, w=8):
    return torch.full((n, h, w), IGNORE_INDEX)


def _logits(c=3, n=2, h=8, w=8):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64,
                       requires_grad=True)


NO_VALID = torch.zeros(2, 8, 8, dtype=torch.bool)
ALL_IGNORED = {
    "segmentation_loss": lambda z: L.segmentation_loss(z, _void_labels()),
    "affinity_loss": lambda z: L.affinity_loss(z, _void_labels()),
    "symmetric_cross_entropy": lambda z: L.symmetric_cross_entropy(z, _void_labels()),
    "rmi_loss": lambda z: L.rmi_loss(z, _void_labels(), radius=2, pool_size=2),
    "rmi_loss_softmax": lambda z: L.rmi_loss(z, _void_labels(), radius=2, pool_size=2, activation="softmax"),
    "cas_loss": lambda z: L.cas_loss(z.softmax(1), _void_labels()),
    "CASLoss": lambda z: L.CASLoss()(z, _void_labels()),
    "balanced_bce_loss": lambda z: L.balanced_bce_loss(z[:, :1], torch.zeros(2, 8, 8), NO_VALID),
    "boundary_loss": lambda z: L.boundary_loss([z[:, :1], z[:, 1:2]], torch.zeros(2, 8, 8), NO_VALID),
    "log_depth_loss": lambda z: L.log_depth_loss(z[:, :1], torch.zeros(2, 1, 8, 8, dtype=torch.float64)),
    "normal_loss": lambda z: L.normal_loss(z, F.normalize(torch.randn(2, 3, 8, 8, dtype=torch.float64), dim=1),
                                           NO_VALID),
    "narrow_band_loss": lambda z: L.narrow_band_loss(z[:, :1], torch.zeros(2, 1, 8, 8, dtype=torch.float64),
                                                     valid=NO_VALID),
    "multitask_loss": lambda z: L.multitask_loss({"seg": z}, {"labels": _void_labels()}),
}


@pytest.mark.parametrize("name", sorted(ALL_IGNORED))
def test_all_ignored_batch_gives_zero_loss_and_zero_gradient(name):
    z = _logits()
    loss = ALL_IGNORED[name](z)
    assert torch.is_tensor(loss) and loss.ndim == 0
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert z.grad is not None and float(z.grad.abs().max()) == 0.0


def test_void_image_leaves_the_mean_of_the_per_image_losses():
    # one void image beside a labelled one: the labelled image alone decides the loss
    z = _logits(c=2)
    labels = torch.randint(0, 2, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    mixed = torch.stack([labels[0], _void_labels(1)[0]])
    torch.testing.assert_close(L.cas_loss(z.softmax(1), mixed), L.cas_loss(z[:1].softmax(1), labels[:1]))
    torch.testing.assert_close(L.segmentation_loss(z, mixed), L.segmentation_loss(z[:1], labels[:1]))
    rmi = L.rmi_loss(z, mixed, radius=2, pool_size=2, reduction="none")
    assert float(rmi[1].detach()) == 0.0 and float(rmi[0].detach()) != 0.0
    rmi_only = dict(radius=2, pool_size=2, ce_weight=0.0)
    torch.testing.assert_close(L.rmi_loss(z, mixed, **rmi_only), L.rmi_loss(z[:1], labels[:1], **rmi_only))


# ------------------------------------------------------------------------------------------------
# An all-ignored batch: every metric raises, naming the argument
# ------------------------------------------------------------------------------------------------

PRED = torch.zeros(2, 8, 8, dtype=torch.long)
METRICS_ALL_IGNORED = {
    "mean_iou": (lambda: M.mean_iou(PRED, _void_labels(), 3), "`labels`"),
    "pixel_accuracy": (lambda: M.pixel_accuracy(PRED, _void_labels()), "`labels`"),
    "matched_iou": (lambda: M.matched_iou(PRED, _void_labels(), 2), "`labels`"),
    "mean_iou_from_confusion": (lambda: M.mean_iou_from_confusion(M.confusion_matrix(PRED, _void_labels(), 3)), "`cm`"),
    "MeanIoU": (lambda: _updated(M.MeanIoU(3)).compute(), "`labels`"),
    "PixelAccuracy": (lambda: _updated(M.PixelAccuracy(3)).compute(), "`labels`"),
    "depth_metrics": (lambda: M.depth_metrics(torch.ones(2, 8, 8), torch.ones(2, 8, 8), NO_VALID), "`valid`"),
    "depth_metrics_holes": (lambda: M.depth_metrics(torch.ones(2, 8, 8), torch.zeros(2, 8, 8)), "`target`"),
    "normal_metrics": (lambda: M.normal_metrics(torch.ones(2, 3, 8, 8), torch.ones(2, 3, 8, 8), NO_VALID), "`valid`"),
    "boundary_f": (lambda: M.boundary_f(torch.rand(2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.bool)), "`labels`"),
}


def _updated(metric):
    metric.update(PRED, _void_labels())
    return metric


@pytest.mark.parametrize("name", sorted(METRICS_ALL_IGNORED))
def test_all_ignored_batch_is_an_error_naming_the_argument(name):
    call, argument = METRICS_ALL_IGNORED[name]
    with pytest.raises(ValueError, match=argument):
        call()


def test_confusion_matrix_of_an_all_ignored_batch_is_zero_counts():
    # counts are not scores: nothing counted is a valid (zero) matrix, which the scores then refuse
    assert int(M.confusion_matrix(PRED, _void_labels(), 3).sum()) == 0


# ------------------------------------------------------------------------------------------------
# Return types and devices
# ------------------------------------------------------------------------------------------------

def test_functional_scores_are_floats_and_per_image_scores_are_tensors():
    g = torch.Generator().manual_seed(3)
    probs, labels = torch.rand(2, 8, 8, generator=g), torch.rand(2, 8, 8, generator=g) > 0.5
    img, ref = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    for value in (M.mae(probs, labels), M.s_measure(probs, labels), M.psnr(img, ref), M.ssim(img, ref),
                  *M.fbeta_scores(probs, labels).values(), M.matched_iou(PRED, labels.long(), 2)):
        assert type(value) is float
    for value in (M.mae_per_image(probs, labels), M.s_measure_per_image(probs, labels), M.psnr_per_image(img, ref),
                  M.ssim_per_image(img, ref), *M.fbeta_per_image(probs, labels).values(),
                  M.matched_iou_per_image(PRED, labels.long(), 2)):
        assert torch.is_tensor(value) and value.shape == (2,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tensors_come_back_on_the_input_device():
    labels = (torch.rand(2, 8, 8) > 0.5).long().cuda()
    assert M.count_components(labels).device.type == "cuda"
    assert M.boundary_f(torch.rand(2, 8, 8).cuda(), labels.bool(), return_curves=True)["f"].device.type == "cuda"
    assert pixelbook.ops.sdf_from_mask(labels.bool()).device.type == "cuda"
