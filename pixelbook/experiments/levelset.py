"""Chapter 2's experiment: does a learned flow refine a contour, and does it matter that it is a flow? [NODE-LS]

Every arm starts from the same initial contour: a deliberately small, briefly trained UNet that
regresses the narrow-band distance map (built in ``data``, with the run's seed, as the paper's
pipeline builds it before the NODE). On held-out StarShapes images (one star-shaped object among
look-alike distractors, weak edges, noise) the arms are

- ``initial``: the initial contour itself (no refinement);
- ``chan_vese``: hand-set Chan–Vese from the initial contour (scikit-image's weights, no learned
  parameter; only its number of iterations is chosen, on the *training* images);
- ``contour_evolution``: the paper's Contour Evolution (Eq. 3), trained with forward Euler in
  4 steps (4 function evaluations, NFE); scored with its training solver and, *without
  retraining*, with other solvers and steps (the ``iou.*`` metrics) — if the network has learned
  a flow, the result must not depend on how finely the flow is solved;
- ``residual_refiner``: the discrete counterpart (:class:`pixelbook.levelset.ResidualRefiner`):
  the same embedding, dynamics network and readout, 4 residual blocks = the same NFE, but a
  network per block (no continuous-time limit, ~3x the dynamics' parameters);
- ``unet_large``: a UNet with several times the NODE's parameters, trained to regress the distance
  map from the image alone (the paper's comparison).

Each seed draws its own training and test images, its own initial UNet and every network's
initial weights and batch order; the arms of one seed share the images and the initial contour, so
the claims compare arms seed by seed. The claims below were committed before the ``medium`` results
existed (git history).
"""

from __future__ import annotations

from ..results import Claim
from ..runtime import scaled
from ..training import TrainConfig
from .base import Arm, Experiment

__all__ = ["LevelSetExperiment", "EXPERIMENT", "EVAL_SOLVERS"]

#: The solvers every trained ODE is scored with: metric name -> solver options. ``euler4`` is the
#: training solver (forward Euler, step 1/4: NFE 4); the others are applied to the same weights.
EVAL_SOLVERS = {
    "euler4": {"method": "euler", "step_size": 0.25},
    "euler2": {"method": "euler", "step_size": 0.5},
    "euler8": {"method": "euler", "step_size": 0.125},
    "rk4": {"method": "rk4", "step_size": 0.25},
    "dopri5": {"method": "dopri5", "rtol": 0.0, "atol": 1e-3},  # [NODE-LS, §4.3]: rtol 0, atol 1e-3
    "dopri5_tight": {"method": "dopri5", "rtol": 0.0, "atol": 1e-5},  # the tightest atol the paper explores
}

_TRAINED = ("contour_evolution", "residual_refiner", "unet_large")

# Margins, fixed before any medium run. IoU here is the pooled IoU of {phi > 0} over the test set
# (the paper's IoU). 0.01 is the smallest gain the paper reports for Contour Evolution: 0.8866 vs
# 0.8762 over the 5M UNet on KiTS19 (Table 1), i.e. what the paper itself counts as a real gain;
# a difference smaller than that we treat as "the same result". k = 4 of 5 seeds: with no effect a
# difference beats a margin >= 0 on >= 4 of 5 seeds with probability <= 6/32.
_M = 0.01


class LevelSetExperiment(Experiment):
    chapter = "02_neural_ode_levelsets"
    title = "Level sets and Neural ODE segmentation"
    arms = (
        Arm("initial", "the initial contour: a small UNet trained briefly (no refinement)"),
        Arm("chan_vese", "hand-set Chan-Vese from the initial contour (0 learned parameters)"),
        Arm("contour_evolution", "Contour Evolution (Eq. 3), trained with forward Euler, 4 steps (NFE 4)",
            {"kind": "ce"}),
        Arm("residual_refiner", "the same networks as 4 residual blocks with their own weights (NFE 4)",
            {"kind": "resnet"}),
        Arm("unet_large", "a larger UNet regressing the distance map from the image alone", {"kind": "unet"}),
    )
    # 5 seeds: the refiners' differences may be within two spreads (issue 10).
    seeds = {"smoke": (0,), "small": (0,), "medium": (0, 1, 2, 3, 4), "full": (0,)}
    claims = (
        Claim("ce_refines_initial", "Contour Evolution improves its initial contour (the paper's premise)",
              metric="seg.iou", arm_a="contour_evolution", arm_b="initial", margin=_M, k=4, n=5,
              paper="KiTS19 IoU 0.8866 (Contour Evolution) vs 0.8762 (UNet 5M), Table 1; initial contour not reported"),
        Claim("ce_beats_chan_vese", "Contour Evolution beats hand-set Chan-Vese from the same initial contour",
              metric="seg.iou", arm_a="contour_evolution", arm_b="chan_vese", margin=_M, k=4, n=5,
              paper="not compared in the paper"),
        # Does continuity matter? Two claims, so that each outcome has a name: the first holds if the
        # flow is better than the discrete refiner, the second if it is at least not worse.
        Claim("continuity_helps", "Contour Evolution beats the discrete residual refiner with the same "
              "networks and NFE", metric="seg.iou", arm_a="contour_evolution", arm_b="residual_refiner",
              margin=_M, k=4, n=5, paper="not compared in the paper",
              expected=False),  # set after the medium run: it did not hold (0 of 5 seeds; Chapter 2, §13)
        Claim("continuity_not_worse", "Contour Evolution is not worse than the discrete residual refiner "
              "by the margin or more", metric="seg.iou", arm_a="contour_evolution", arm_b="residual_refiner",
              margin=-_M, k=4, n=5, paper="not compared in the paper"),
        # "The flow carries the result": the trained weights, solved accurately (the paper's dopri5),
        # must segment at least as well as with the 4 Euler steps they were trained with.
        Claim("flow_carries_result", "Solved accurately (dopri5, atol 1e-3) instead of with its 4 training "
              "Euler steps, Contour Evolution is not worse by the margin or more", metric="iou.dopri5",
              metric_b="iou.euler4", arm_a="contour_evolution", arm_b="contour_evolution", margin=-_M, k=4, n=5,
              paper="§5: tolerances give 'similar losses but largely different number of NODE function "
                    "evaluations' (no table)",
              expected=False),  # set after the medium run: 3 of 5 seeds (Chapter 2, §13)
        # If the 4 training steps approximate a flow, halving them can only add discretisation error.
        Claim("coarser_is_worse", "Contour Evolution scores better with its 4 training Euler steps than "
              "with 2 coarser ones", metric="iou.euler4", metric_b="iou.euler2",
              arm_a="contour_evolution", arm_b="contour_evolution", margin=0.0, k=4, n=5,
              paper="not in the paper"),
        Claim("ce_vs_large_unet", "Contour Evolution (with its initial contour) is not worse than a UNet "
              "with several times its parameters", metric="seg.iou", arm_a="contour_evolution",
              arm_b="unet_large", margin=-_M, k=4, n=5,
              paper="KiTS19: 0.8866 (NodeUNet 5M) vs 0.8494 (UNet 15M), Table 1",
              expected=False),  # set after the medium run: 3 of 5 seeds (Chapter 2, §13)
    )
    replay_arm = "contour_evolution"

    # -- configuration --------------------------------------------------------------------------

    def config(self, arm, seed, scale):
        full = scale == "full"
        data = {
            "dataset": "stars",
            "variant": "basic",
            "size": scaled(scale, smoke=24, small=32, medium=32, full=32),
            "n_train": scaled(scale, smoke=32, small=256, medium=1024, full=4096),
            "n_test": scaled(scale, smoke=16, small=256, medium=512, full=1024),
            "seed": seed,
            "narrow_band": 3.0,  # s (pixels) of tanh(phi / s); ours, the paper gives none
            # the initial contour: a UNet of width 4, depth 2 trained for a few epochs (Chapter 2, §11)
            "init_unet": {"width": 4, "depth": 2, "epochs": scaled(scale, smoke=1, small=3, medium=3, full=3),
                          "lr": 3e-3, "batch_size": 16},
        }
        evals = {"narrow_band": 3.0, "chan_vese_steps": [0, 5, 10, 20, 40], "chan_vese_mu": 0.25}
        if arm.name in ("initial", "chan_vese"):
            return self.make_config(arm, seed, scale, train=None, data=data, eval=evals)
        # ours: 12 epochs of 256 images at `small` (the live demo); `medium` 4x the images and 25
        # epochs (1,600 steps of 16), sized from a pilot's training curves (a seed not in `medium`).
        epochs = scaled(scale, smoke=1, small=12, medium=25, full=40)
        train = TrainConfig(epochs=epochs, lr=3e-3, batch_size=16, optimizer="adam", schedule="cosine",
                            grad_clip=1.0, seed=seed)
        kind = arm.params["kind"]
        if kind == "unet":
            model = {"kind": "unet", "width": 8, "depth": 2}
        else:
            model = {"kind": kind, "embed_channels": 6, "hidden": 12, "blocks": 4,
                     "train_solver": EVAL_SOLVERS["euler4"]}
            evals = {**evals, "solvers": EVAL_SOLVERS if kind == "ce" else {}}
        return self.make_config(arm, seed, scale, train=train, data=data, model=model,
                                loss={"narrow_band": 3.0}, eval=evals)

    # -- data, model, loss, evaluation ----------------------------------------------------------

    def data(self, config):
        import torch

        from ..data.starshapes import make_star_shapes
        from ..levelset import narrow_band_loss
        from ..models import UNet
        from ..runtime import seed_all
        from ..training import fit, iterate_batches

        d = config.data
        s = d["narrow_band"]
        tr = make_star_shapes(d["n_train"], d["size"], d["variant"], seed=1000 * d["seed"] + 1)
        te = make_star_shapes(d["n_test"], d["size"], d["variant"], seed=1000 * d["seed"] + 2)
        u = d["init_unet"]
        seed_all(d["seed"])
        init = UNet(1, 1, width=u["width"], depth=u["depth"])
        cfg = TrainConfig(epochs=u["epochs"], lr=u["lr"], batch_size=u["batch_size"], seed=d["seed"])
        fit(init, lambda m, b: narrow_band_loss(s * m(b["image"]), b["phi"], scale=s),
            {"image": tr["image"], "phi": tr["phi"]}, cfg, progress=False, desc="initial UNet")
        init.eval()

        @torch.no_grad()
        def contour(images):
            return torch.cat([s * init(b["image"]) for b in iterate_batches({"image": images}, 256)])

        from ..models import count_parameters

        train = {"image": tr["image"], "phi": tr["phi"], "phi0": contour(tr["image"])}
        test = {"image": te["image"], "masks": te["masks"], "phi0": contour(te["image"])}
        return {"train": train, "test": test, "init_params": count_parameters(init)}

    def model(self, config, data):
        from ..levelset import ContourEvolution, ResidualRefiner
        from ..models import UNet

        m = config.model
        s = config.loss["narrow_band"]
        if m["kind"] == "unet":
            return UNet(1, 1, width=m["width"], depth=m["depth"])
        if m["kind"] == "ce":
            return ContourEvolution(1, embed_channels=m["embed_channels"], hidden=m["hidden"], scale=s,
                                    adjoint=False, **m["train_solver"])
        return ResidualRefiner(1, embed_channels=m["embed_channels"], hidden=m["hidden"], scale=s,
                               blocks=m["blocks"])

    def loss(self, config):
        from ..levelset import narrow_band_loss

        s = config.loss["narrow_band"]
        if config.model["kind"] == "unet":
            return lambda model, b: narrow_band_loss(s * model(b["image"]), b["phi"], scale=s)
        return lambda model, b: narrow_band_loss(model(b["image"], b["phi0"]), b["phi"], scale=s)

    @staticmethod
    def _scores(phi, masks, s, prefix="seg"):
        from ..levelset import segmentation_scores

        sc = segmentation_scores(phi, masks, scale=s)
        return {f"{prefix}.iou": sc["pooled_iou"], f"{prefix}.mean_iou": sc["mean_iou"],
                f"{prefix}.fbeta": sc["fbeta"], f"{prefix}.mae": sc["mae"]}

    def evaluate(self, config, model, data):
        import torch

        from ..levelset import chan_vese, segmentation_scores
        from ..models import count_parameters
        from ..training import iterate_batches

        s, e = config.eval["narrow_band"], config.eval
        test = data["test"]
        if model is None and config.arm == "initial":
            return {**self._scores(test["phi0"], test["masks"], s), "params": float(data["init_params"])}
        if model is None:  # Chan-Vese: iterations chosen on the training images, then applied to the test set
            tr = data["train"]
            scores = {k: segmentation_scores(chan_vese(tr["image"], tr["phi0"], mu=e["chan_vese_mu"], steps=k),
                                             tr["phi"][:, 0] > 0)["pooled_iou"] for k in e["chan_vese_steps"]}
            steps = max(scores, key=scores.get)
            phi = chan_vese(test["image"], test["phi0"], mu=e["chan_vese_mu"], steps=steps)
            return {**self._scores(phi, test["masks"], s), "params": 0.0, "chan_vese.steps": float(steps)}
        device = next(model.parameters()).device
        model.eval()

        @torch.no_grad()
        def predict():
            out = []
            for b in iterate_batches({"image": test["image"], "phi0": test["phi0"]}, 128):
                x = b["image"].to(device)
                out.append((s * model(x) if config.model["kind"] == "unet" else model(x, b["phi0"].to(device))).cpu())
            return torch.cat(out)

        params = count_parameters(model)
        out = {**self._scores(predict(), test["masks"], s), "params": float(params),
               "params_with_initial": float(params + (0 if config.model["kind"] == "unet" else data["init_params"]))}
        if config.model["kind"] == "resnet":
            out["nfe"] = float(model.nfe_forward)
        for name, opts in e.get("solvers", {}).items():  # the same weights, other solvers
            model.configure_solver(**opts)
            phi = predict()
            out[f"iou.{name}"] = segmentation_scores(phi, test["masks"], scale=s)["pooled_iou"]
            out[f"nfe.{name}"] = float(model.nfe_forward)
        if e.get("solvers"):
            model.configure_solver(**config.model["train_solver"])
        return out


EXPERIMENT = LevelSetExperiment()
