"""Chapter 6's experiment: pixel embeddings grouped by recurrent mean shift [Kong thesis, Ch. 5].

Data: :func:`pixelbook.data.instances.make_instance_scenes`, 32 × 32 images of 2–5 overlapping
shapes whose colours repeat (colour alone cannot separate instances); ``"mixed"`` sizes, and an
``"unequal"`` set with one large shape below tiny ones. Each seed draws its own train / val / test
images. Model: :class:`pixelbook.models.EmbeddingNet` (the same network, D = 8, in every arm).

Arms:

- ``gbms``: mixed data, instance-size weights, T = 3 GBMS loops unrolled in training with the loss
  after every loop (δ = 6, Ch. 5's convention; GBMS on the 256 sampled pixels) — the thesis' method;
- ``plain``: the same without GBMS in training (Eq. 5.2 alone);
- ``unequal_instance`` / ``unequal_uniform``: unequal data, no GBMS in training, instance-size
  weights vs uniform pixel weights — the ablation of §5.3.1.

Evaluation, the same for every arm, on the test split: GBMS on all pixels, then greedy mode merging
(cos > 0.9, segments ≥ 4 px); the bandwidth δ and the number of iterations T are chosen per run on
the *val* split by ARI from a fixed grid (the thesis gives no rule for T; δ = 6 is its rule, the
others are narrower). Reported: ARI, covering of the instances, AP at IoU 0.5 of the scored
segments, predicted vs true counts, best IoU per instance by size bin; average recall of proposals
pooled over three bandwidths; the same metrics for spherical k-means given the true number of
groups and for direct thresholding without GBMS; the boundary/interior ratio of the loss gradient
with and without one GBMS loop (Fig. 5.5).

The claims below — and :data:`WITHIN_ARM_CLAIMS`, which compare two measurements of one arm — were
written before the ``medium`` results existed (git history: committed first). A single-seed pilot
on the val split (seed 0 of the data, not a medium run) showed that the read-out needs δ and T to be
chosen (δ = 6 with T = 10 merges small instances), which is why the protocol selects them on val;
the margins do not come from it.

At ``full`` scale (:data:`FULL_DATA`, :data:`FULL_MODEL`, :data:`FULL_LOSS`, :data:`FULL_TRAIN`; cost:
:data:`FULL_COST`) the arms train a 64-dimensional DeepLabV3-ResNet50 embedding on PASCAL VOC 2012 +
SBD instances and are evaluated on VOC 2012 val, the thesis' proposal experiment [Kong thesis,
§5.5.1]; ``unequal_instance`` is not run there (it would be ``plain``), ``unequal_uniform`` is the
weighting ablation on VOC.

The arm ``bsds_boundary`` exists at ``full`` scale only (:data:`FULL_BSDS_DATA`, :data:`FULL_BSDS_MODEL`,
:data:`FULL_BSDS_LOSS`, :data:`FULL_BSDS_TRAIN`, :data:`FULL_BSDS_EVAL`; cost: :data:`FULL_COST`
``["bsds500"]``): the thesis' boundary detector [Kong thesis, §5.5.2] — BSDS500's boundary and
non-boundary pixels as the two groups of the embedding loss, 3-D embeddings on four ResNet-50 stages,
then a fusion layer fine-tuned with a logistic loss — scored by boundary ODS, OIS and AP on the 200
test images (``python -m pixelbook.run 06_mean_shift_grouping --scale full --arm bsds_boundary``).
The thesis shows this experiment only as precision-recall curves (Fig. 5.6, p. 94): it gives no
number to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..results import Claim
from ..runtime import scaled
from ..training import TrainConfig
from .base import Arm, Experiment

__all__ = ["MeanShiftExperiment", "EXPERIMENT", "WithinArmClaim", "WITHIN_ARM_CLAIMS", "SIZE_BINS", "FULL_DATA",
           "FULL_MODEL", "FULL_LOSS", "FULL_TRAIN", "FULL_COST", "PooledEmbedding", "FULL_BSDS_DATA",
           "FULL_BSDS_MODEL", "FULL_BSDS_LOSS", "FULL_BSDS_TRAIN", "FULL_BSDS_EVAL", "evaluate_boundaries"]

#: Instance area bins (pixels, at 32 × 32) for the per-size IoU: [0, 40), [40, 150), [150, ∞).
#: ours: a 40-px instance is a disk of radius ~3.5 px — the tiny shapes of the unequal set.
SIZE_BINS = (("small", 0, 40), ("medium", 40, 150), ("large", 150, 10 ** 9))
#: Why ``bsds_boundary`` runs at ``full`` scale only (its ``skip_arms`` entry at the other scales).
_BSDS_ONLY_FULL = ("runs at 'full' scale only: the thesis' BSDS500 boundary detector (Sec. 5.5.2) needs BSDS500 "
                   "and an ImageNet ResNet-50, which the synthetic scenes of the smaller scales cannot stand for")


@dataclass(frozen=True)
class WithinArmClaim:
    """"``metric`` of ``arm`` exceeds ``threshold`` on at least ``k`` of ``n`` seeds" — a claim about one arm.

    :class:`pixelbook.results.Claim` compares two arms; the gradient-focus claim compares two
    measurements of the same trained model, so it is a ratio metric of one arm against a threshold.
    """

    id: str
    statement: str
    arm: str
    metric: str
    threshold: float
    k: int
    n: int = 3
    expected: bool = True
    paper: str = ""

    #: The fields that decide the outcome; the experiment's claims hash covers exactly these.
    HASHED = ("id", "arm", "metric", "threshold", "k", "n")

    def hashed(self) -> dict:
        """The fields that decide the outcome (:attr:`HASHED`), as a dict."""
        return {name: getattr(self, name) for name in self.HASHED}

    def evaluate(self, results) -> "WithinArmOutcome":
        values = results.values(self.arm, self.metric)
        seeds = tuple(sorted(values))
        vals = tuple(float(values[s]) for s in seeds)
        wins = sum(v > self.threshold for v in vals)
        return WithinArmOutcome(self, seeds, vals, wins, len(seeds) == self.n and wins >= self.k)


@dataclass(frozen=True)
class WithinArmOutcome:
    claim: WithinArmClaim
    seeds: tuple
    values: tuple
    wins: int
    holds: bool

    def __str__(self) -> str:
        c = self.claim
        vals = ", ".join(f"{v:.3f}" for v in self.values)
        return (f"{c.id}: {c.statement}\n  {c.arm} {c.metric} per seed: {vals} (> {c.threshold} on {self.wins} of "
                f"{len(self.seeds)} seeds, needs {c.k}) -> {'holds' if self.holds else 'does not hold'}")

    def check(self) -> None:
        if self.holds != self.claim.expected:
            raise AssertionError(f"{self.claim.id}: expected {'to hold' if self.claim.expected else 'to fail'}, "
                                 f"but it {'holds' if self.holds else 'does not hold'}:\n{self}")


# Written before any medium result existed.
# Margin 0.0 with k = 3 of 3: "better on every seed" (probability 1/8 if the arms did not differ).
WITHIN_ARM_CLAIMS = (
    # ours: a 10 % higher boundary/interior ratio is the smallest change one would call "focus" in a
    # gradient map; the thesis shows it qualitatively (Fig. 5.5), so we ask for it on every seed.
    WithinArmClaim("gradient_focus_on_boundaries", "One GBMS loop between the embeddings and the loss raises the "
                   "boundary/interior ratio of the gradient magnitude (Fig. 5.5)", arm="gbms",
                   metric="grad.focus_gain", threshold=1.1, k=3,
                   # `expected` (not hashed) records the outcome: the 500-step run (c4dedee) had 2 of 3
                   # seeds, the converged 1000-step run (af534b3) 3 of 3 (see the chapter)
                   paper="qualitative (Fig. 5.5, PASCAL VOC): gradients focus on ambiguous pixels near boundaries"),
)


class MeanShiftExperiment(Experiment):
    chapter = "06_mean_shift_grouping"
    title = "Pixel embeddings and recurrent mean-shift grouping"
    arms = (
        Arm("gbms", "mixed sizes; instance weights; T = 3 GBMS loops in training, loss after each (the thesis')",
            {"sizes": "mixed", "weighting": "instance", "num_iters": 3}),
        Arm("plain", "mixed sizes; instance weights; no GBMS in training (Eq. 5.2 alone)",
            {"sizes": "mixed", "weighting": "instance", "num_iters": 0}),
        Arm("unequal_instance", "unequal sizes; instance weights w = 1/|I_q| (Sec. 5.3.1); no GBMS in training",
            {"sizes": "unequal", "weighting": "instance", "num_iters": 0}),
        Arm("unequal_uniform", "unequal sizes; uniform pixel weights; no GBMS in training",
            {"sizes": "unequal", "weighting": "uniform", "num_iters": 0}),
        Arm("bsds_boundary", "full scale only: BSDS500 boundary / non-boundary pixels as two groups, 3-D "
            "embeddings on four ResNet-50 stages, then a fusion layer fine-tuned with a logistic loss (Sec. 5.5.2)",
            {"dataset": "bsds500", "weighting": "instance", "num_iters": 0}),
    )
    seeds = {"smoke": (0,), "small": (0,), "medium": (0, 1, 2), "full": (0,)}  # full: FULL_* below
    skip_arms = {"full": {"unequal_instance": "on PASCAL VOC there is no 'unequal' set: with instance weights and "
                                              "no GBMS in training it is the plain arm (unequal_uniform is the "
                                              "weighting ablation there)"},
                 **{scale: {"bsds_boundary": _BSDS_ONLY_FULL} for scale in ("smoke", "small", "medium")}}
    # Written before any medium result existed (see the module docstring).
    claims = (
        # ours: with uniform weights a 20-px instance's pairs weigh ~(20/1000)^2 of the background's
        # (Sec. 5.3.1), a structural effect, so we ask for a large gain (0.05 IoU) on every seed.
        Claim("size_weighting_small_instances", "Instance-size weighting raises the IoU of small instances "
              "(< 40 px) on the unequal set", metric="group.iou_small", arm_a="unequal_instance",
              arm_b="unequal_uniform", margin=0.05, k=3, n=3,
              paper="argued in Sec. 5.3.1 (Prop. 5.1); no ablation number in the thesis"),
        Claim("size_weighting_ari", "Instance-size weighting does not cost more than 0.02 ARI on the unequal set",
              metric="group.ari", arm_a="unequal_instance", arm_b="unequal_uniform", margin=-0.02, k=3, n=3,
              # `expected` (not hashed): failed on 3 of 3 seeds at 500 steps (c4dedee, not converged),
              # holds on 3 of 3 in the converged 1000-step run (af534b3; see the chapter)
              paper="not tested in the thesis"),
        # the thesis' claim that unrolling GBMS in training helps (it reports no ablation; Table 5.1
        # compares with other methods): direction only, on every seed.
        Claim("gbms_training_ari", "GBMS loops in training raise the ARI of the grouped instances",
              metric="group.ari", arm_a="gbms", arm_b="plain", margin=0.0, k=3, n=3,
              expected=False,  # recorded after the medium runs: fails on 3 of 3 seeds at 500 and 1000 steps
              paper="AR@10 0.769 vs 0.558 for inst-DML (PASCAL VOC val, full scale, Table 5.1; another method)"),
        Claim("gbms_training_ap", "GBMS loops in training raise AP at IoU 0.5 of the grouped instances",
              metric="group.ap50", arm_a="gbms", arm_b="plain", margin=0.0, k=3, n=3,
              expected=False,  # recorded after the medium runs: fails on 3 of 3 seeds at 500 and 1000 steps
              paper="AP^r 64.5 vs 62.1 for inst-DML (PASCAL VOC val, full scale, Table 5.2; another method)"),
    )
    # covered by the claims hash with `claims` (Experiment.claims_hash)
    within_arm_claims = WITHIN_ARM_CLAIMS
    replay_arm = "gbms"

    # -- configuration --------------------------------------------------------------------------

    def config(self, arm, seed, scale):
        p = arm.params
        if p.get("dataset") == "bsds500":
            if scale != "full":
                raise ValueError(f"`scale`: the arm 'bsds_boundary' {_BSDS_ONLY_FULL}; got {scale!r}")
            return self._full_bsds_config(arm, seed)
        if scale == "full":
            return self._full_config(arm, seed)
        data = {
            "sizes": p["sizes"], "size": 32, "seed": seed,
            "n_train": scaled(scale, smoke=32, small=480, medium=2000),
            "n_val": scaled(scale, smoke=8, small=24, medium=40),
            "n_test": scaled(scale, smoke=8, small=24, medium=120),
        }
        # ours: 1000 steps of 16 images at medium (8 epochs of 2000 images, cosine schedule). The plan
        # had 2000 steps (where the pilot's loss flattened); the first medium run (commit c4dedee) had
        # 500 (4 epochs), sized from a one-core timing of 0.28 s/step with GBMS in training and 0.10
        # s/step without, and did not converge: the val ARI was still rising at the last epoch on every
        # run (gbms 0.818 -> 0.840 seed 1, unequal_instance 0.750 -> 0.775 seed 0). That run measured
        # 0.11-0.19 s/step (gbms) and 0.05-0.07 s/step (the T = 0 arms) on one thread: 498 s of
        # training and 257 s of evaluation for the 12 runs (13.2 core-min), so 1000 steps cost about
        # 2 x 8.3 + 4.3 + 0.6 = 21.5 core-min (24 at the slowest measured rates), within 25.
        # 40 val / 120 test images at medium (evaluating one model on 200 val + 300 test images took 130 s).
        # small is the live demo within the notebook's 120 s (240 steps, 24 val / 24 test images).
        train = TrainConfig(epochs=scaled(scale, smoke=1, small=8, medium=8), lr=1e-3, batch_size=16,
                            optimizer="adam", schedule="cosine", seed=seed)
        model = {"name": "EmbeddingNet", "dim": 8, "width": 32, "dilations": [1, 1, 2, 4, 8, 1], "coords": True}
        loss = {"alpha": 0.5, "weighting": p["weighting"], "num_samples": 256, "delta": 6.0,
                "num_iters": p["num_iters"], "eta": 1.0, "loss_at": "all", "gbms_on": "sampled"}
        ev = {"deltas": [6.0, 12.0, 24.0], "iters": [3, 10], "threshold": 0.9, "min_size": 4,
              "size_bins": [[name, lo, hi] for name, lo, hi in SIZE_BINS], "grad_images": 50,
              "monitor_n": scaled(scale, smoke=4, small=16, medium=32)}
        return self.make_config(arm, seed, scale, train=train, data=data, model=model, loss=loss, eval=ev)

    def _full_config(self, arm, seed):
        p = arm.params
        loss = {**FULL_LOSS, "weighting": p["weighting"], "num_iters": p["num_iters"]}
        ev = {"deltas": [6.0, 12.0, 24.0], "iters": [3, 10], "threshold": 0.9, "min_size": 4,
              "size_bins": [[name, lo, hi] for name, lo, hi in SIZE_BINS], "grad_images": 50, "monitor_n": 32}
        return self.make_config(arm, seed, "full", train=TrainConfig(**FULL_TRAIN, seed=seed),
                                data={**FULL_DATA, "seed": seed}, model=dict(FULL_MODEL), loss=loss, eval=ev)

    def _full_bsds_config(self, arm, seed):
        p = arm.params
        loss = {**FULL_BSDS_LOSS, "weighting": p["weighting"], "num_iters": p["num_iters"]}
        return self.make_config(arm, seed, "full", train=TrainConfig(**FULL_BSDS_TRAIN, seed=seed),
                                data={**FULL_BSDS_DATA, "seed": seed}, model=dict(FULL_BSDS_MODEL), loss=loss,
                                eval=dict(FULL_BSDS_EVAL))

    # -- data, model, loss, evaluation ----------------------------------------------------------

    def data(self, config):
        from ..data.instances import make_instance_scenes

        d = config.data
        if d.get("dataset") == "voc_instances":
            return _voc_data(d)
        if d.get("dataset") == "bsds500":
            return _bsds_data(d)
        out = {}
        for split, n in (("train", d["n_train"]), ("val", d["n_val"]), ("test", d["n_test"])):
            s = make_instance_scenes(n, d["size"], d["seed"], split, sizes=d["sizes"])
            out[split] = {"image": s["image"], "instances": s["instances"]}
        return out

    def model(self, config, data):
        if config.model["name"] == "deeplabv3_resnet50":
            return _full_model(config.model)
        if config.model["name"] == "boundary_embedding_resnet50":
            from ..models import BoundaryEmbeddingNet

            m = config.model
            return BoundaryEmbeddingNet(m["dim"], weights_backbone=m["weights_backbone"],
                                        frozen_batchnorm=m["frozen_batchnorm"])
        from ..models import EmbeddingNet

        m = config.model
        return EmbeddingNet(dim=m["dim"], width=m["width"], dilations=tuple(m["dilations"]), coords=m["coords"])

    def loss(self, config):
        from ..meanshift import embedding_loss

        c = dict(config.loss)
        if config.data.get("dataset") == "bsds500":
            return _bsds_loss(c, len(self.load_data(config)["train"]))

        def loss_fn(model, batch):  # `valid`: VOC's void pixels at full scale (the synthetic scenes have none)
            return embedding_loss(model(batch["image"]), batch["instances"], c["alpha"], weighting=c["weighting"],
                                  valid=batch.get("valid"),
                                  num_samples=c["num_samples"], delta=c["delta"], num_iters=c["num_iters"],
                                  eta=c["eta"], loss_at=c["loss_at"], gbms_on=c["gbms_on"])

        return loss_fn

    def monitor(self, config, data):
        from ..meanshift import segment
        from ..metrics import adjusted_rand_index

        n = config.eval["monitor_n"]
        if config.data.get("dataset") == "bsds500":  # convergence only: nothing is chosen by it
            return lambda model: {"test_ods": evaluate_boundaries(model, data["test"], config.data, config.eval,
                                                                  n)["boundary.ods"]}
        val = {k: v[:n] for k, v in data["val"].items()}

        def fn(model):
            if config.scale == "full":
                model = PooledEmbedding(model, config.data["stride"])
            emb = embed(model, val["image"])
            seg = segment(emb, 6.0, 3, config.eval["threshold"], config.eval["min_size"])
            return {"val_ari": adjusted_rand_index(seg, val["instances"])}

        return fn

    def evaluate(self, config, model, data):
        if config.data.get("dataset") == "bsds500":
            return evaluate_boundaries(model, data["test"], config.data, config.eval)
        if config.scale == "full":  # grouped on the stride-8 grid, as the thesis groups its stride-8 map
            model = PooledEmbedding(model, config.data["stride"])
        return evaluate_grouping(model, data["val"], data["test"], config.eval, config.loss)


def embed(model, images: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """The unit embeddings of ``images`` ``(N, 3, H, W)``, in eval mode, batch by batch."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        out = torch.cat([model(images[i:i + batch].to(device)).cpu() for i in range(0, len(images), batch)])
    model.train(was)
    return out


def choose_readout(emb_val, instances_val, ev) -> tuple[float, int]:
    """The (δ, T) of the grid in ``ev`` with the best ARI on the val split (first of ties)."""
    from ..meanshift import segment
    from ..metrics import adjusted_rand_index

    scores = {}
    for delta in ev["deltas"]:
        for iters in ev["iters"]:
            seg = segment(emb_val, delta, iters, ev["threshold"], ev["min_size"])
            scores[(delta, iters)] = adjusted_rand_index(seg, instances_val)
    return max(scores, key=lambda k: scores[k])


def _segment_metrics(seg, instances, masks, scores, bins, prefix) -> dict:
    from ..metrics import adjusted_rand_index, best_iou_per_instance, instance_average_precision, segmentation_covering

    count = torch.tensor([len(torch.unique(s)) for s in seg])
    true = torch.tensor([len(torch.unique(t)) for t in instances])  # instances + background
    ious, areas = best_iou_per_instance(seg, instances)
    out = {f"{prefix}.ari": adjusted_rand_index(seg, instances),
           f"{prefix}.covering": segmentation_covering(seg, instances),
           f"{prefix}.count_exact": float((count == true).double().mean()),
           f"{prefix}.count_error": float((count - true).double().mean()),
           f"{prefix}.count_abs_error": float((count - true).abs().double().mean())}
    for name, lo, hi in bins:
        m = (areas >= lo) & (areas < hi)
        out[f"{prefix}.iou_{name}"] = float(ious[m].mean()) if bool(m.any()) else float("nan")
    if masks is not None:
        out[f"{prefix}.ap50"] = instance_average_precision(masks, scores, instances, 0.5)
    return out


def evaluate_grouping(model, val, test, ev, loss_cfg) -> dict:
    """Every number of the chapter's table for one trained model (see the module docstring)."""
    from ..meanshift import (flatten_embeddings, gradient_map, instance_boundaries, propose, score_segments, segment,
                             spherical_kmeans)
    from ..metrics import average_recall

    bins = ev["size_bins"]
    emb_val, emb_test = embed(model, val["image"]), embed(model, test["image"])
    delta, iters = choose_readout(emb_val, val["instances"], ev)
    inst = test["instances"]
    # GBMS read-out (count-free); its segments scored by cohesion give AP
    seg = segment(emb_test, delta, iters, ev["threshold"], ev["min_size"])
    props = score_segments(emb_test, seg)
    out = {"group.delta": delta, "group.iters": float(iters)}
    out.update(_segment_metrics(seg, inst, [m for m, _ in props], [s for _, s in props], bins, "group"))
    # proposals pooled over three bandwidths (the thesis' "multiple smaller bandwidths")
    pooled = propose(emb_test, (delta / 2, delta, 2 * delta), iters, ev["threshold"], ev["min_size"])
    masks, scores = [m for m, _ in pooled], [s for _, s in pooled]
    out["proposals.count"] = float(sum(len(m) for m in masks) / len(masks))
    out["proposals.ar"] = average_recall(masks, inst, scores, max_proposals=10)
    out["proposals.ar50"] = average_recall(masks, inst, scores, max_proposals=10, iou_thresholds=(0.5,))
    # direct thresholding of the embeddings, no GBMS
    direct = segment(emb_test, delta, 0, ev["threshold"], ev["min_size"])
    out.update(_segment_metrics(direct, inst, None, None, bins, "direct"))
    # spherical k-means given the true number of groups (background included)
    pts = flatten_embeddings(emb_test)
    g = torch.Generator().manual_seed(0)
    km = torch.stack([spherical_kmeans(pts[b], len(torch.unique(inst[b])), generator=g)
                      for b in range(len(pts))]).reshape(inst.shape)
    out.update(_segment_metrics(km, inst, None, None, bins, "kmeans"))
    # where the gradient goes: boundary / interior ratio without and with one GBMS loop (Fig. 5.5)
    n = ev["grad_images"]
    e, y = emb_test[:n], inst[:n]
    band = instance_boundaries(y, 1)
    ratios = {}
    for t in (0, 1):
        gm = gradient_map(e, y, t, alpha=loss_cfg["alpha"], weighting=loss_cfg["weighting"], delta=loss_cfg["delta"])
        ratios[t] = float(gm[band].mean() / gm[~band].mean())
    out["grad.boundary_ratio_noloop"], out["grad.boundary_ratio_loop"] = ratios[0], ratios[1]
    out["grad.focus_gain"] = ratios[1] / ratios[0]
    return out


# ----------------------------------------------------------------------------------------------
# Full scale: PASCAL VOC 2012 + SBD instances, the thesis' proposal experiment [Kong thesis, §5.5.1]
# ----------------------------------------------------------------------------------------------

#: Data [Kong thesis, §5.5.1]: trained on VOC 2012 train + SBD ("train_aug", 10,582 images), evaluated
#: on VOC 2012 val (1,449 images). Ours: 200 training images held out (seeded) to choose the read-out's
#: bandwidth and iterations, as the medium protocol chooses them on its val split (the thesis gives no
#: rule); 320 x 320 training crops (the thesis: random crops "with a 20-pixel margin", size not given),
#: scales U(0.5, 1.5), rotations U(-10, 10) degrees and flips as the thesis (no colour jitter);
#: evaluation images resized to 256 x 256 and grouped on the stride-8 grid (32 x 32 embeddings,
#: average-pooled and renormalised), against the instance masks resized (nearest) to that grid, VOC's
#: void pixels counted as background (the grouping metrics have no ignore label).
FULL_DATA = {"dataset": "voc_instances", "root": None, "download": True, "train_split": "train_aug",
             "test_split": "val", "n_readout": 200, "split_seed": 0, "crop": 320, "scales": [0.5, 1.5],
             "rotate": 10.0, "eval_size": 256, "stride": 8, "n_train": None, "n_test": None, "batch_size": 1,
             "workers": 4}
#: The network [Kong thesis, §5.5.1]: an ImageNet ResNet-50 with its last two stages dilated (output
#: stride 8) under a DeepLab-v3 head with a 64-dimensional embedding (torchvision's DeepLabV3-ResNet50,
#: :func:`pixelbook.models.deeplabv3_resnet50`), BatchNorm frozen ("global moments used in train and
#: test"); the embeddings are L2-normalised per pixel.
FULL_MODEL = {"name": "deeplabv3_resnet50", "dim": 64, "output_stride": 8, "weights_backbone": "IMAGENET1K_V1",
              "frozen_batchnorm": True}
#: The loss: alpha = 0.5 and D = 64 [Kong thesis, §5.3.2], delta = 6 from 1/delta = (1 - alpha)/3, the loss
#: after every GBMS loop; 1,024 sampled pixels per image (ours: "set based on available GPU memory");
#: T = 3 loops in the gbms arm (the thesis does not give T for PASCAL; the chapter's).
FULL_LOSS = {"alpha": 0.5, "num_samples": 1024, "delta": 6.0, "eta": 1.0, "loss_at": "all", "gbms_on": "sampled"}
#: Training [Kong thesis, §5.5.1]: batch 1, SGD (momentum 0.9, weight decay 5e-4: the official code's
#: fine-tuning settings), "poly" learning rate from 2.5e-4. The thesis gives no number of iterations:
#: 10 epochs (103,820 iterations) are ours.
FULL_TRAIN = {"epochs": 10, "lr": 2.5e-4, "batch_size": 1, "optimizer": "sgd", "weight_decay": 5e-4,
              "schedule": "poly", "eval_every": 1}
#: What a full run costs: an ESTIMATE, per dataset. ``"voc"``: FLOPs counted with
#: ``torch.utils.flop_counter`` on this network: 383 GFLOP forward + backward per 320² crop (output stride
#: 8, D = 64; GBMS on 1,024 sampled pixels adds < 1 %), x 103,820 iterations = 4.0e16 FLOP, ~1.1 h at an
#: assumed effective 10 TFLOP/s; steps of one image keep a GPU far from that rate, so allow 2-3
#: GPU-hours per arm, three arms. The thesis gives no time (one Titan X, MatConvNet). Downloads: VOC 2012
#: ~2 GB + SBD ~1.4 GB; ResNet-50 weights 98 MB. ``"bsds500"`` (the arm ``bsds_boundary``): FLOPs counted
#: the same way on :class:`pixelbook.models.BoundaryEmbeddingNet` with its loss: 233 GFLOP forward + backward per 320² crop
#: in either stage, x 27,000 iterations = 6.3e15 FLOP, ~0.2 h at the assumed 10 TFLOP/s; with steps of
#: one image and the boundary scoring on the CPU (a 20-image monitor every 10 epochs, the 200 test images
#: at the end) allow ~0.5 GPU-hour. Downloads: BSR_full.tgz 252 MB; ResNet-50 weights 98 MB.
FULL_COST = {"voc": {"gpu_hours_per_arm": 2.5, "arms": 3, "download_gb": 3.4},
             "bsds500": {"gpu_hours_per_arm": 0.5, "arms": 1, "download_gb": 0.35,
                         "gflop_per_iteration": 233.0, "iterations": 27000}}


class PooledEmbedding(torch.nn.Module):
    """``model``'s unit embeddings average-pooled over ``stride`` x ``stride`` cells and renormalised."""

    def __init__(self, model, stride: int):
        super().__init__()
        self.model, self.stride = model, stride

    def forward(self, image):
        e = torch.nn.functional.avg_pool2d(self.model(image), self.stride)
        return torch.nn.functional.normalize(e, dim=1)


class _UnitEmbedding(torch.nn.Module):
    """A network's outputs L2-normalised per pixel."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image):
        return torch.nn.functional.normalize(self.net(image), dim=1)


def _full_model(m):
    from ..models import deeplabv3_resnet50

    return _UnitEmbedding(deeplabv3_resnet50(m["dim"], output_stride=m["output_stride"],
                                             weights_backbone=m["weights_backbone"],
                                             frozen_batchnorm=m["frozen_batchnorm"]))


def _voc_data(d):
    """VOC 2012 + SBD instances: training crops (a seeded loader), the read-out split and VOC val as tensors."""
    from torch.utils.data import Subset

    from ..data.instances import InstanceTransform, VOCInstances
    from ._full import VOC_INSTANCES_HOW, open_dataset, train_loader

    aug = InstanceTransform(d["crop"], tuple(d["scales"]), d["rotate"])
    plain = InstanceTransform(train=False, size=d["eval_size"])
    train = open_dataset(lambda: VOCInstances(d["root"], d["train_split"], download=d["download"], transform=aug),
                         VOC_INSTANCES_HOW)
    test = open_dataset(lambda: VOCInstances(d["root"], d["test_split"], download=d["download"], transform=plain),
                        VOC_INSTANCES_HOW)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(d["split_seed"])).tolist()
    n_readout = min(d["n_readout"], len(train) - d["batch_size"])
    if n_readout < 1:
        raise ValueError(f"`data`: {len(train)} training images cannot give a read-out split and a batch")
    readout = Subset(VOCInstances(d["root"], d["train_split"], transform=plain), sorted(order[:n_readout]))
    keep = sorted(order[n_readout:])
    if d["n_train"] is not None:
        keep = keep[:d["n_train"]]
    n_test = len(test) if d["n_test"] is None else min(d["n_test"], len(test))
    return {"train": train_loader(Subset(train, keep), d["batch_size"], d["seed"], d["workers"]),
            "val": _stack(readout, d["stride"]), "test": _stack(Subset(test, range(n_test)), d["stride"])}


def _stack(dataset, stride: int) -> dict:
    """Images ``(N, 3, S, S)`` and instances on the stride grid ``(N, S/stride, S/stride)`` (nearest; void -> 0)."""
    images, instances = [], []
    for sample in dataset:
        inst = sample["instances"]
        inst = torch.where(inst == 255, torch.zeros_like(inst), inst)
        S = inst.shape[-1]
        grid = torch.nn.functional.interpolate(inst[None, None].float(), size=(S // stride, S // stride),
                                               mode="nearest")[0, 0].long()
        images.append(sample["image"])
        instances.append(grid)
    return {"image": torch.stack(images), "instances": torch.stack(instances)}



# ----------------------------------------------------------------------------------------------
# Full scale, BSDS500: the thesis' boundary detector [Kong thesis, §5.5.2]
# ----------------------------------------------------------------------------------------------

#: Data [Kong thesis, §5.5.1-5.5.2]: "the standard split [7, 358], using 300 train-val images to train
#: ... and evaluate on the remaining 200 test images"; the same augmentation as on VOC (scales
#: U(0.5, 1.5), rotations U(-10, 10) degrees, flips; 320 x 320 crops, divisible by 8, as the thesis asks;
#: no colour jitter, no 20-pixel margin: ours, as at VOC). The two groups (§5.5.2: "the number of
#: instances labels is 2"): a pixel is a boundary (1) when at least ``positive`` = half the annotators
#: drew one there, not a boundary (0) when none did, void (255, out of the loss) in between — ours
#: (the thesis does not say how it merges the 5-9 annotators), the rule of Chapter 1
#: (:data:`pixelbook.multitask.BSDS_POSITIVE`). The nearest-neighbour rescaling of the augmentation thins
#: one-pixel boundaries at scales < 1 (ours, as the masks on VOC). Test images are scored whole
#: (481 x 321, portrait ones transposed), against the same consensus map.
FULL_BSDS_DATA = {"dataset": "bsds500", "root": None, "download": True, "archive": "bsds500_full",
                  "train_splits": ["train", "val"], "test_split": "test", "positive": 0.5, "crop": 320,
                  "scales": [0.5, 1.5], "rotate": 10.0, "n_train": None, "n_test": None, "batch_size": 1,
                  "workers": 4}
#: The network [Kong thesis, §5.5.1-5.5.2]: an ImageNet ResNet-50 at output stride 8 (the last two stages
#: dilated 2 and 4), BatchNorm frozen, with "multiple branches over ResBlock 2, 3, 4, 5" (as COB and HED),
#: each a "3-dimensional embedding space" (:class:`pixelbook.models.BoundaryEmbeddingNet`: a 1 x 1 convolution per stage,
#: up-sampled bilinearly to the image and L2-normalised), and "a fusion layer that combines predictions
#: from multiple levels" (a 1 x 1 convolution of the four embeddings to one logit).
FULL_BSDS_MODEL = {"name": "boundary_embedding_resnet50", "dim": 3, "output_stride": 8,
                   "weights_backbone": "IMAGENET1K_V1", "frozen_batchnorm": True}
#: The loss, in two stages [Kong thesis, §5.5.2]: first the embedding loss (Eq. 5.2, alpha = 0.5 from
#: §5.3.2, instance-size weights w = 1/|I_q| of §5.3.1 for the > 90 % non-boundary pixels) on every
#: branch, summed, *without* GBMS ("even though we didn't utilize mean-shift grouping, the trained
#: embedding already produces compact clusters": ``num_iters`` 0); then the whole network with its
#: fusion layer "fine-tuned with a logistic loss" — the thesis' class-balanced one of Ch. 2 (Eq. 2.2,
#: :func:`pixelbook.losses.balanced_bce_loss`), on the fused map only (ours). 1,024 sampled pixels per
#: image as on VOC (ours: "set based on available GPU memory"); ``embed_epochs`` of the embedding
#: stage (ours: the thesis gives no iteration count).
FULL_BSDS_LOSS = {"alpha": 0.5, "num_samples": 1024, "delta": 6.0, "eta": 1.0, "loss_at": "all",
                  "gbms_on": "sampled", "embed_epochs": 60}
#: Training [Kong thesis, §5.5.1]: batch 1, SGD (momentum 0.9, weight decay 5e-4 as on VOC), one "poly"
#: schedule from 2.5e-4 over both stages. Ours: 60 + 30 epochs of the 300 images (27,000 iterations;
#: the thesis gives no number), a monitor every 10 epochs.
FULL_BSDS_TRAIN = {"epochs": 90, "lr": 2.5e-4, "batch_size": 1, "optimizer": "sgd", "weight_decay": 5e-4,
                   "schedule": "poly", "eval_every": 10}
#: Evaluation (ours; the thesis plots precision-recall curves, Fig. 5.6, without numbers): boundary
#: ODS, OIS and AP of the fused map's sigmoid with :func:`pixelbook.metrics.boundary_f` at 99 thresholds
#: (the BSDS benchmark's count) and a matching distance of 0.0075 of the image diagonal (the BSDS
#: benchmark's ``maxDist``: 4.3 px at 481 x 321) — a simplified benchmark (no thinning, no one-to-one
#: matching, the consensus map instead of each annotator), so not comparable with published BSDS numbers.
#: ``monitor_n``: test images scored by the per-epoch monitor (a convergence curve; nothing is chosen by it).
FULL_BSDS_EVAL = {"thresholds": 99, "max_dist": 0.0075, "monitor_n": 20}


class _BoundaryGroups:
    """A BSDS500 sample as the two groups of §5.5.2: ``instances`` 1 (boundary: an annotator share of at
    least ``positive``), 0 (no annotator), 255 (void, in between); then ``transform`` (the augmentation)."""

    def __init__(self, positive: float, transform=None):
        self.positive, self.transform = positive, transform

    def __call__(self, sample: dict) -> dict:
        share = sample["boundaries"]
        groups = torch.full(share.shape, 255, dtype=torch.long)
        groups[share >= self.positive] = 1
        groups[share == 0] = 0
        out = {"image": sample["image"], "instances": groups, "labels": groups}
        return self.transform(out) if self.transform is not None else out


def _bsds_data(d):
    """BSDS500 train + val as training crops (a seeded loader) and the test split (read one image at a time)."""
    from torch.utils.data import ConcatDataset, Subset

    from ..data.bsds import BSDS500
    from ..data.instances import InstanceTransform
    from ._full import BSDS_HOW, open_dataset, train_loader

    aug = _BoundaryGroups(d["positive"], InstanceTransform(d["crop"], tuple(d["scales"]), d["rotate"]))

    def split(name, transform=None):
        return open_dataset(lambda: BSDS500(d["root"], name, download=d["download"], archive=d["archive"],
                                            transform=transform), BSDS_HOW)

    train = ConcatDataset([split(name, aug) for name in d["train_splits"]])
    test = split(d["test_split"])
    n_train = len(train) if d["n_train"] is None else min(d["n_train"], len(train))
    n_test = len(test) if d["n_test"] is None else min(d["n_test"], len(test))
    return {"train": train_loader(Subset(train, range(n_train)), d["batch_size"], d["seed"], d["workers"]),
            "test": Subset(test, range(n_test))}


def _bsds_loss(c, steps_per_epoch: int):
    """The two-stage loss of §5.5.2: the embedding loss on every branch, then the logistic loss of the fusion."""
    from ..losses import balanced_bce_loss
    from ..meanshift import embedding_loss

    embed_steps = c["embed_epochs"] * steps_per_epoch

    def loss_fn(model, batch):
        step = model.advance()
        out = model(batch["image"])
        if step < embed_steps:
            loss = sum(embedding_loss(e, batch["instances"], c["alpha"], weighting=c["weighting"],
                                      valid=batch["valid"], num_samples=c["num_samples"], delta=c["delta"],
                                      num_iters=c["num_iters"], eta=c["eta"], loss_at=c["loss_at"],
                                      gbms_on=c["gbms_on"]) for e in out["embeddings"])
            # the fusion layer is not used in this stage; a zero-weighted term keeps its parameters in the
            # graph (gradient 0), which DistributedDataParallel requires
            zero = sum(q.sum() for q in model.fuse.parameters()) * 0.0
            return loss + zero, {"embedding": float(loss.detach())}
        bce = balanced_bce_loss(out["boundary"], (batch["instances"] == 1).float(), batch["valid"])
        return bce, {"logistic": float(bce.detach())}

    return loss_fn


def evaluate_boundaries(model, test, data_cfg, ev, n: int | None = None) -> dict:
    """Boundary ODS, OIS and AP of ``model``'s fused map on the first ``n`` samples of ``test`` (BSDS500).

    Each image is scored whole (normalised as in training; portrait images transposed to landscape
    after the prediction), against the annotator consensus (share >= ``data_cfg["positive"]``), with
    :func:`pixelbook.metrics.boundary_f` at ``ev["thresholds"]`` thresholds and a matching distance
    of ``ev["max_dist"]`` times the image diagonal. Images of other sizes are padded with probability 0
    and no ground truth, which adds no count. Every process scores every image (200 at full scale).

    Returns:
        ``{"boundary.ods", "boundary.ois", "boundary.ap", "boundary.tolerance_px", "boundary.images"}``.
    """
    import math

    from torchvision.transforms.v2 import functional as TF

    from ..data.instances import InstanceTransform
    from ..metrics import boundary_f

    was = model.training
    model.eval()
    device = next(model.parameters()).device
    n = len(test) if n is None else min(n, len(test))
    probs, truth = [], []
    with torch.no_grad():
        for i in range(n):
            sample = test[i]
            image = TF.normalize(sample["image"], InstanceTransform.MEAN, InstanceTransform.STD)
            p = torch.sigmoid(model(image[None].to(device))["boundary"])[0, 0].cpu()
            gt = sample["boundaries"] >= data_cfg["positive"]
            if p.shape[0] > p.shape[1]:  # portrait -> landscape
                p, gt = p.T, gt.T
            probs.append(p)
            truth.append(gt)
    model.train(was)
    H, W = max(p.shape[0] for p in probs), max(p.shape[1] for p in probs)

    def pad(t):
        return torch.nn.functional.pad(t, (0, W - t.shape[1], 0, H - t.shape[0]))

    tol = ev["max_dist"] * math.hypot(H, W)
    r = boundary_f(torch.stack([pad(p) for p in probs]).clamp(0, 1), torch.stack([pad(t) for t in truth]),
                   tolerance=tol, thresholds=ev["thresholds"])
    return {"boundary.ods": r["ods"], "boundary.ois": r["ois"], "boundary.ap": r["ap"],
            "boundary.tolerance_px": tol, "boundary.images": float(n)}


EXPERIMENT = MeanShiftExperiment()
