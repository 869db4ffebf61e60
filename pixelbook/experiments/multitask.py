"""Chapter 1's experiment: one network for four pixel tasks, and the thesis' two losses [Kong thesis, Ch. 2].

Arms (all with the PixelNet of :mod:`pixelbook.models`, trained with the same budget):

- ``multitask``: one encoder, four heads, the thesis' losses (γ = 2, λ = 4), equal task weights;
- ``seg_only``: the segmentation head alone (the single-task baseline of the same network);
- ``depth_l1l2`` / ``depth_l2``: depth alone with the L2 + L1 log-depth loss of Eq. 2.3 (γ = 2)
  and with its L2 term alone (γ = 0) — the ablation of the thesis' Table 2.5;
- ``normals_cos_acos`` / ``normals_cos``: normals alone with the cosine + arc-cosine loss of
  Eq. 2.4 (λ = 4) and with the cosine term alone (λ = 0) — the ablation of Table 2.6;
- ``trivial`` and ``mean_depth_map``: no training; the predictors that ignore the image
  (majority class, constant boundary rate, mean depth, mean normal) and the per-pixel mean depth
  map of the training set, the baseline a depth network must beat.

Each seed draws its own synthetic scenes (train and held-out), its own initial weights and batch
order; the arms of one seed share the scenes, so the claims compare arms seed by seed. The claims
below were written before the ``medium`` results existed (git history: they were committed first).
"""

from __future__ import annotations

from ..results import Claim
from ..runtime import scaled
from ..training import TrainConfig
from .base import Arm, Experiment

__all__ = ["MultitaskExperiment", "EXPERIMENT"]

_SINGLE = {"seg_only": ("seg",), "depth_l1l2": ("depth",), "depth_l2": ("depth",),
           "normals_cos_acos": ("normals",), "normals_cos": ("normals",)}
_ALL_TASKS = ("seg", "boundary", "depth", "normals")


class MultitaskExperiment(Experiment):
    chapter = "01_pixel_level_prediction"
    title = "Pixel-level prediction: one network, four tasks"
    arms = (
        Arm("multitask", "one encoder, four heads; gamma = 2, lambda = 4 (the thesis' losses)",
            {"tasks": _ALL_TASKS, "gamma": 2.0, "lam": 4.0}),
        Arm("seg_only", "segmentation head only (single-task baseline)", {"tasks": ("seg",)}),
        Arm("depth_l1l2", "depth only, L2 + L1 on log-depth, gamma = 2 (Eq. 2.3)", {"tasks": ("depth",), "gamma": 2.0}),
        Arm("depth_l2", "depth only, L2 on log-depth alone, gamma = 0", {"tasks": ("depth",), "gamma": 0.0}),
        Arm("normals_cos_acos", "normals only, cosine + 4 arc-cosine, lambda = 4 (Eq. 2.4)",
            {"tasks": ("normals",), "lam": 4.0}),
        Arm("normals_cos", "normals only, cosine alone, lambda = 0", {"tasks": ("normals",), "lam": 0.0}),
        Arm("trivial", "no training: majority class, constant boundary rate, mean depth, mean normal"),
        Arm("mean_depth_map", "no training: the per-pixel mean depth map of the training scenes"),
    )
    # medium: 5 seeds, since the thesis' loss effects are small (Tables 2.5/2.6: +0.008 δ<1.25, +0.022 of
    # pixels within 11.25°) and may be within two spreads here (issue 10: "5 where the effect is within 2 spreads").
    seeds = {"smoke": (0,), "small": (0,), "medium": (0, 1, 2, 3, 4), "full": (0,)}
    # Written before any medium result existed. Margins for the thesis' two losses: on the metrics that
    # count a share of pixels (δ<1.25, within 11.25°) half the gain the thesis reports, in the same
    # units (its numbers are on NYUv2 at full scale; halving allows for a smaller effect on our
    # synthetic scenes while still asking for more than noise), on k = 4 of 5 seeds (with no effect, a
    # difference beats a margin >= 0 on >= 4 of 5 seeds with probability <= 6/32). The mean angle is in
    # degrees, whose scale depends on the data (the thesis' 0.63° is at 23° of error, ours are a few
    # degrees): there we claim only the direction, on every seed (probability 1/32 with no effect).
    claims = (
        Claim("depth_l1_term", "The L1 term of the depth loss (Eq. 2.3, γ = 2) raises δ<1.25 over the L2 term alone",
              metric="depth.d1", arm_a="depth_l1l2", arm_b="depth_l2", margin=0.004, k=4, n=5,
              paper="0.745 vs 0.737 (L1+L2 vs L2; NYUv2, full scale, thesis Table 2.5)", fmt=".4f",
              expected=False),  # set after the medium run: it did not hold (Chapter 1, section 8)
        Claim("normal_acos_term_a11", "The arc-cosine term of the normal loss (Eq. 2.4, λ = 4) raises the share of "
              "pixels within 11.25°", metric="normals.a11", arm_a="normals_cos_acos", arm_b="normals_cos",
              margin=0.011, k=4, n=5, paper="0.338 vs 0.316 (cos + acos vs cos; NYUv2, full scale, thesis Table 2.6)"),
        Claim("normal_acos_term_mean", "The arc-cosine term of the normal loss (Eq. 2.4, λ = 4) lowers the mean "
              "angle error", metric="normals.mean", arm_a="normals_cos_acos", arm_b="normals_cos", margin=0.0, k=5,
              n=5, higher_is_better=False, fmt=".2f",
              paper="22.72° vs 23.35° (cos + acos vs cos; NYUv2, full scale, thesis Table 2.6)"),
        # ours: the mean depth map knows the average layout of floor and wall; a depth network must get
        # clearly more pixels within 25 % of the truth than that prior: 5 % of all pixels more, every seed.
        Claim("depth_beats_mean_map", "The multi-task network's depth beats the per-pixel mean depth map",
              metric="depth.d1", arm_a="multitask", arm_b="mean_depth_map", margin=0.05, k=5, n=5,
              paper="71.1 % within 1.25 (NYUv2, full scale, thesis Table 2.3; no mean-map baseline given)"),
        # Multi- vs single-task: the thesis trains one network per task and claims nothing here; these
        # state multi-task learning's premise (sharing an encoder helps each task) with the same budget.
        Claim("multitask_helps_seg", "Sharing the encoder with three other tasks improves segmentation",
              metric="seg.miou", arm_a="multitask", arm_b="seg_only", margin=0.0, k=4, n=5,
              paper="not tested in the thesis (one network per task)",
              expected=False),  # set after the medium run: it did not hold (Chapter 1, section 8)
        Claim("multitask_helps_depth", "Sharing the encoder with three other tasks improves depth",
              metric="depth.d1", arm_a="multitask", arm_b="depth_l1l2", margin=0.0, k=4, n=5,
              paper="not tested in the thesis (one network per task)"),
        Claim("multitask_helps_normals", "Sharing the encoder with three other tasks improves normals",
              metric="normals.mean", arm_a="multitask", arm_b="normals_cos_acos", margin=0.0, k=4, n=5,
              higher_is_better=False, fmt=".2f", paper="not tested in the thesis (one network per task)"),
    )
    replay_arm = "multitask"

    # -- configuration --------------------------------------------------------------------------

    def config(self, arm, seed, scale):
        p = arm.params
        full = scale == "full"
        data = {
            "dataset": "nyuv2" if full else "synthetic",
            "size": scaled(scale, smoke=[32, 32], small=[64, 64], medium=[64, 64], full=[240, 320]),
            "n_train": scaled(scale, smoke=16, small=480, medium=960, full=None),  # None: the whole split
            "n_val": scaled(scale, smoke=8, small=64, medium=256, full=None),
            "seed": seed,
            "root": None,  # NYUv2: a folder with its files; None: the dataset registry's cache
        }
        if arm.name in ("trivial", "mean_depth_map"):
            return self.make_config(arm, seed, scale, train=None, data=data, eval={"boundary_tolerance": 1.0})
        single = arm.name in _SINGLE and arm.name != "seg_only"
        # ours: `small` trains the multi-task and seg-only models for 16 epochs (the chapter's live demo,
        # < 120 s in all) and the four loss-ablation models for 6. `medium` trains every arm with the same
        # budget: 2x the data and 2.5x the steps of `small` (1,200 steps of 16 scenes), which fits
        # 8 arms x 5 seeds in < 30 min on 2 cores; convergence is checked on the recorded histories.
        epochs = scaled(scale, smoke=1, small=6 if single else 16, medium=20, full=40)
        train = TrainConfig(epochs=epochs, lr=3e-3, batch_size=scaled(scale, smoke=8, small=16, medium=16, full=8),
                            optimizer="adamw", weight_decay=1e-4, schedule="cosine", seed=seed,
                            # the chapter's widget scrubs through the multi-task network's epochs
                            snapshot_every=scaled(scale, smoke=1, small=1, medium=1, full=5) if arm.name == "multitask" else 0)
        model = {"name": "PixelNet", "tasks": list(p["tasks"]), "encoder": "resnet50" if full else "tiny",
                 "pretrained": full, "widths": [24, 32, 48, 64, 64], "head_width": 32, "head_stride": 2}
        loss = {"weights": {t: 1.0 for t in p["tasks"]}, "gamma": p.get("gamma", 2.0), "lambda": p.get("lam", 4.0)}
        return self.make_config(arm, seed, scale, train=train, data=data, model=model, loss=loss,
                                eval={"boundary_tolerance": 1.0, "monitor_n": scaled(scale, smoke=4, small=32,
                                                                                     medium=64, full=64)})

    # -- data, model, loss, evaluation ----------------------------------------------------------

    def data(self, config):
        from ..multitask import load_task_data

        d = config.data
        full = d["dataset"] == "nyuv2"
        kw = dict(size=tuple(d["size"]), seed=d["seed"], root=d["root"], download=full)
        train, classes = load_task_data(d["dataset"], "train", d["n_train"], **kw)
        val, _ = load_task_data(d["dataset"], "val", d["n_val"], **kw)
        return {"train": train, "val": val, "classes": classes}

    def model(self, config, data):
        from ..models import PixelNet

        m = config.model
        return PixelNet(len(data["classes"]), tasks=tuple(m["tasks"]), encoder=m["encoder"], widths=tuple(m["widths"]),
                        head_width=m["head_width"], head_stride=m["head_stride"],
                        weights_backbone="DEFAULT" if m["pretrained"] else None)

    def loss(self, config):
        from ..losses import multitask_terms

        weights, gamma, lam = dict(config.loss["weights"]), config.loss["gamma"], config.loss["lambda"]

        def loss_fn(model, batch):  # the weighted total for the optimiser, the unweighted terms for the history
            terms = multitask_terms(model(batch["image"]), batch, gamma=gamma, lam=lam)
            total = sum(float(weights.get(task, 1.0)) * term for task, term in terms.items())
            return total, {task: float(term.detach()) for task, term in terms.items()}

        return loss_fn

    def evaluate(self, config, model, data):
        from ..multitask import predict_dataset, task_metrics, trivial_predictions

        val, classes = data["val"], data["classes"]
        if model is None:
            trivial = trivial_predictions(data["train"], len(val["image"]), tuple(val["image"].shape[-2:]), len(classes))
            pred = ({"depth": trivial["depth_map"]} if config.arm == "mean_depth_map" else
                    {k: v for k, v in trivial.items() if k != "depth_map"})
        else:
            pred = predict_dataset(model, val, device=next(model.parameters()).device)
        return flat_metrics(task_metrics(pred, val, len(classes), boundary_tolerance=config.eval["boundary_tolerance"]),
                            classes)

    def monitor(self, config, data):
        from ..multitask import predict_dataset, task_metrics

        n = config.eval["monitor_n"]
        val = {k: v[:n] for k, v in data["val"].items()}
        tasks = [t for t in config.model["tasks"] if t != "boundary"]  # boundary F is the slow one

        def fn(model):
            pred = predict_dataset(model, val, device=next(model.parameters()).device)
            pred = {t: pred[t] for t in tasks}
            flat = flat_metrics(task_metrics(pred, val, len(data["classes"])), data["classes"])
            keep = ("seg.miou", "depth.d1", "depth.abs_rel", "normals.mean", "normals.a11")
            return {f"val_{k}": v for k, v in flat.items() if k in keep}

        return fn


def flat_metrics(nested: dict, classes) -> dict:
    """``{"seg": {"miou": ...}, ...}`` as ``{"seg.miou": ..., "seg.iou.<class>": ...}`` (floats)."""
    out = {}
    for task, values in nested.items():
        for name, value in values.items():
            if name == "per_class_iou":
                out.update({f"{task}.iou.{c}": float(v) for c, v in zip(classes, value.tolist())})
            else:
                out[f"{task}.{name}"] = float(value)
    return out


EXPERIMENT = MultitaskExperiment()
