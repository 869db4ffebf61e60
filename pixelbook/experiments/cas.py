"""Chapter 9's experiment: the class-agnostic segmentation (CAS) loss against cross-entropy [CAS].

Synthetic salient-object scenes (:func:`pixelbook.data.saliency.make_saliency_scenes`: one object
among clutter on scikit-image textures, 32 × 32). Two label sets for the same training images:
**HFD** (correct) and **LFD** (each image's two region labels swapped with probability 0.5, drawn
once; the paper's "probability of incorrect region label of 0.5"). Validation and test labels are
always correct. Each seed draws its own scenes, swaps, initial weights and batch order; the arms of
one seed share them, so the claims compare arms seed by seed.

Arms, each on two networks (``fcn_*``: the small FCN, 7 k parameters, receptive field 31 px;
``resnet_*``: torchvision's FCN on a ResNet trunk cut after its second stage, the paper's
``fcn_resnet101`` family at 0.35 M parameters), with the same budget per network:

- ``*_ce_hfd`` / ``*_ce_lfd``: cross-entropy on correct / swapped labels;
- ``*_cace_lfd``: the symmetrised cross-entropy (the paper's "class-agnostic CE", CACE: the minimum
  over the two labellings of each image) on swapped labels;
- ``*_cas_lfd``: CAS (Eq. 1, α = 0.1) on swapped labels.

CACE and CAS are exactly invariant to the swap (Chapter 9 checks it bit for bit), so their LFD run
*is* their HFD run and is trained once. And an imbalance probe (``imb_*``): the same scenes with
objects half the size (a quarter of the area, about 4 % of the pixels), correct labels, CE and CAS
on the small FCN.

Read-outs. CAS is invariant to permuting the output channels, in every image separately, so which
channel is "salient" must be decided after training. Every arm is scored with two read-outs:

- ``val.*``, the paper's: one channel for all images, the one that correlates best with the masks of
  labelled validation images [CAS, §4.2];
- ``border.*``, label-free and per image: the channel with the lower mean on the image border is the
  object (the boundary prior of classical saliency, e.g. Wei et al. 2012, "Geodesic saliency using
  background priors"; in these scenes objects lie inside the image by construction and at most
  graze its border).

``diag.*`` are diagnostics computed with the *test* masks (how often the paper's channel correlates
positively with the object, and max F with each image's polarity taken from its mask): they are
reported, never used in a claim.

The claims below were written before the ``medium`` results existed (git history: committed first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..results import Claim
from ..runtime import scaled
from ..training import TrainConfig, iterate_batches
from .base import Arm, Experiment

__all__ = ["CASExperiment", "EXPERIMENT", "FULL_COST", "READOUT_FAILURES", "READOUT_OK", "border_readout", "polarity",
           "readout_scores"]

_NETS = {"fcn": "small FCN", "resnet": "ResNet-FCN"}
_LOSSES = {"ce": "cross-entropy", "cace": "symmetrised cross-entropy (CACE)", "cas": "CAS (Eq. 1, alpha = 0.1)"}
_LABELS = {"hfd": "correct labels (HFD)", "lfd": "labels swapped in half of the images (LFD)"}


def _arm(name, net, loss, labels, scenes="sod"):
    what = f"{_NETS[net]}, {_LOSSES[loss]}, {_LABELS[labels]}" + (", objects half the size" if scenes != "sod" else "")
    return Arm(name, what, {"net": net, "loss": loss, "labels": labels, "scenes": scenes})


#: Object radius of the scenes, as a fraction of the image side: the generator's default, and half of it
#: for the imbalance probe (a quarter of the area).
_OBJECT_RADIUS = {"sod": (0.16, 0.32), "small_objects": (0.08, 0.16)}


#: The read-out problem, defined before the ``medium`` run (with the claims): a read-out *fails* on a seed
#: when fewer than ``READOUT_OK`` of that seed's test images are read with the object's polarity
#: (``diag.polarity`` for the paper's channel, ``diag.border_polarity`` for the border read-out). An image
#: read inverted scores a per-image F near 0, so a tenth of them inverted costs about 0.09 of max F by
#: itself: the margin of the LFD claims below.
READOUT_OK = 0.9

#: The number of failing ``medium`` seeds per (arm, read-out), recorded from the results (as a claim's
#: ``expected`` is): the chapter counts them from the results and asserts this record.
READOUT_FAILURES: dict[tuple[str, str], int] = {
    # recorded from the medium results (commit 53eb808's run): only the paper's read-out of the small FCN
    # trained with CAS fails, on 3 of the 5 seeds; the border read-out fails on none
    ("fcn_ce_hfd", "val"): 0, ("fcn_ce_hfd", "border"): 0,
    ("fcn_cace_lfd", "val"): 0, ("fcn_cace_lfd", "border"): 0,
    ("fcn_cas_lfd", "val"): 3, ("fcn_cas_lfd", "border"): 0,
    ("resnet_ce_hfd", "val"): 0, ("resnet_ce_hfd", "border"): 0,
    ("resnet_cace_lfd", "val"): 0, ("resnet_cace_lfd", "border"): 0,
    ("resnet_cas_lfd", "val"): 0, ("resnet_cas_lfd", "border"): 0,
}


class CASExperiment(Experiment):
    chapter = "09_class_agnostic_segmentation"
    title = "Class-agnostic segmentation loss"
    arms = tuple(_arm(f"{net}_{loss}_{labels}", net, loss, labels) for net in ("fcn", "resnet")
                 for loss, labels in (("ce", "hfd"), ("ce", "lfd"), ("cace", "lfd"), ("cas", "lfd"))) + (
        _arm("imb_ce", "fcn", "ce", "hfd", "small_objects"),
        _arm("imb_cas", "fcn", "cas", "hfd", "small_objects"),
    )
    # medium: 5 seeds. The LFD effects the paper reports are large (Table 1: CAS ahead of CE by 0.18 to 0.41
    # of F), but CAS against CE on correct labels and CAS against CACE are within a few hundredths in the
    # paper (Tables 1-2), i.e. likely within two spreads here (issue 10: "5 where the effect is within 2 spreads").
    seeds = {"smoke": (0,), "small": (0,), "medium": (0, 1, 2, 3, 4), "full": (0,)}

    # Written before any medium result existed. Metric: max F-beta (beta^2 = 0.3) on 500 held-out scenes.
    # The paper reports F-beta at the adaptive threshold 2 mean(S); we decide on max F because the adaptive
    # threshold of a near-constant map (CE on swapped labels converges to S = 1/2, Chapter 9 section 1) is
    # >= 1, which makes its adaptive F exactly 0 by construction and any claim against it easy.
    # Margins come from the paper's own tables (FCN-ResNet101, seven test sets, full scale): half of the
    # smallest gap it reports for the comparison, so that our synthetic scenes may show a smaller effect
    # than the paper's while the claim still asks for more than noise; k = 4 of 5 seeds (with no effect, a
    # difference beats a margin >= 0 on >= 4 of 5 seeds with probability <= 6/32).
    claims = (
        # Table 1 vs Table 2, ResNet-CE: F falls by 0.254 (DUT-OMRON) to 0.492 (DUTS-TE) when half of the
        # training labels are swapped; half of the smallest fall: 0.127.
        Claim("lfd_hurts_ce", "Swapping half of the training labels ruins cross-entropy (ResNet-FCN)",
              metric="val.max_f", arm_a="resnet_ce_hfd", arm_b="resnet_ce_lfd", margin=0.127, k=4, n=5,
              paper="ResNet-CE 0.958 (HFD, Table 2) vs 0.691 (LFD, Table 1); MSRA-B, full scale"),
        # Table 1, ResNet-CAS vs ResNet-CE under LFD: F gaps 0.180 (DUT-OMRON) to 0.409 (DUTS-TE) -> 0.09;
        # MAE gaps 0.070 (THUR15K) to 0.114 (DUTS-TE) -> 0.035.
        Claim("lfd_cas_beats_ce", "Under swapped labels CAS beats cross-entropy (ResNet-FCN, the paper's read-out)",
              metric="val.max_f", arm_a="resnet_cas_lfd", arm_b="resnet_ce_lfd", margin=0.09, k=4, n=5,
              paper="0.920 vs 0.691 (ResNet-CAS vs ResNet-CE, LFD; MSRA-B, full scale, Table 1)"),
        Claim("lfd_cas_beats_ce_mae", "Under swapped labels CAS has a lower MAE than cross-entropy (ResNet-FCN)",
              metric="val.mae", arm_a="resnet_cas_lfd", arm_b="resnet_ce_lfd", margin=0.035, k=4, n=5,
              higher_is_better=False,
              paper="0.038 vs 0.140 (ResNet-CAS vs ResNet-CE, LFD; MSRA-B, full scale, Table 1)"),
        # The same claim and margin on the small FCN, with the paper's read-out (one channel for all
        # images) and with the label-free per-image border read-out (our answer to the read-out problem).
        Claim("lfd_cas_beats_ce_fcn", "Under swapped labels CAS beats cross-entropy (small FCN, the paper's read-out)",
              metric="val.max_f", arm_a="fcn_cas_lfd", arm_b="fcn_ce_lfd", margin=0.09, k=4, n=5,
              paper="0.920 vs 0.691 (ResNet-CAS vs ResNet-CE, LFD; MSRA-B, full scale, Table 1)"),
        Claim("lfd_cas_beats_ce_fcn_border", "Under swapped labels CAS beats cross-entropy (small FCN, border read-out)",
              metric="border.max_f", arm_a="fcn_cas_lfd", arm_b="fcn_ce_lfd", margin=0.09, k=4, n=5,
              paper="not in the paper (its read-out is one channel chosen on validation data)"),
        # Table 1, ResNet-CACE vs ResNet-CE under LFD: F gaps 0.150 (DUT-OMRON) to 0.381 -> 0.075. The text
        # says CACE "fails" in this setting; its own table says it works.
        Claim("lfd_cace_beats_ce", "Under swapped labels the symmetrised CE beats cross-entropy (ResNet-FCN)",
              metric="val.max_f", arm_a="resnet_cace_lfd", arm_b="resnet_ce_lfd", margin=0.075, k=4, n=5,
              paper="0.872 vs 0.691 (ResNet-CACE vs ResNet-CE, LFD; MSRA-B, full scale, Table 1)"),
        # Table 1, ResNet-CAS vs ResNet-CACE under LFD: F gaps 0.019 (PASCAL-S) to 0.048 (MSRA-B) -> 0.0095.
        Claim("lfd_cas_beats_cace", "Under swapped labels CAS beats the symmetrised CE (ResNet-FCN)",
              metric="val.max_f", arm_a="resnet_cas_lfd", arm_b="resnet_cace_lfd", margin=0.0095, k=4, n=5,
              expected=False,  # recorded after the medium run (not hashed): it does not hold
              paper="0.920 vs 0.872 (ResNet-CAS vs ResNet-CACE, LFD; MSRA-B, full scale, Table 1)"),
        # Table 2 (correct labels): the paper's ResNet-CE leads its ResNet-CAS by up to 0.048 (DUTS-TE) in F,
        # and the text calls them equal ("performs equally well and at times superior"). We claim that much:
        # CAS is not behind CE by 0.048 or more. CAS's LFD run is its HFD run (exact swap invariance).
        Claim("hfd_cas_matches_ce", "On correct labels CAS is within 0.048 of cross-entropy (ResNet-FCN)",
              metric="val.max_f", arm_a="resnet_cas_lfd", arm_b="resnet_ce_hfd", margin=-0.048, k=4, n=5,
              paper="0.985 vs 0.958 on MSRA-B, 0.871 vs 0.919 on DUTS-TE (ResNet-CAS vs ResNet-CE, HFD, Table 2)"),
        # Imbalance (paper, "Robustness to class imbalance": all regions "contribute equally", so "even a small
        # region will be represented well"). Equal weight per region is inverse-frequency weighting, which
        # moves the decision threshold of the small class down: at the network's own operating point (the
        # argmax of its two channels) more of the object is found and more background taken for object. The
        # size of the shift depends on how much the classes overlap, which the method does not give, so we
        # claim the direction only, on every seed (probability 1/32 with no effect). Whether this makes a
        # better saliency map (max F, threshold-free) is the paper's reading; we claim it as such, k = 4 of 5.
        # Border read-out for all three, so that a split of CAS's polarity (section 10) cannot pose as recall.
        Claim("imb_cas_recall", "Small objects: at its own operating point CAS finds more of the object than CE",
              metric="border.recall", arm_a="imb_cas", arm_b="imb_ce", margin=0.0, k=5, n=5,
              expected=False,  # recorded after the medium run (not hashed): it does not hold
              paper="not measured in the paper (argued from the equal weight of regions)"),
        Claim("imb_ce_precision", "Small objects: at its own operating point CE is more precise than CAS",
              metric="border.precision", arm_a="imb_ce", arm_b="imb_cas", margin=0.0, k=5, n=5,
              paper="not in the paper (our reading: equal region weights trade precision for recall)"),
        Claim("imb_cas_max_f", "Small objects: CAS gives better saliency maps than CE (max F)",
              metric="border.max_f", arm_a="imb_cas", arm_b="imb_ce", margin=0.0, k=4, n=5,
              expected=False,  # recorded after the medium run (not hashed): it does not hold
              paper="not measured in the paper (argued: CAS 'is immune to class imbalance')"),
    )
    replay_arm = "fcn_cas_lfd"

    # -- configuration --------------------------------------------------------------------------

    def config(self, arm, seed, scale):
        p = arm.params
        full = scale == "full"
        data = {
            "dataset": "msra_b" if full else "synthetic",  # [CAS, Table 1]: LFD training on MSRA-B
            "scenes": p["scenes"],
            "size": scaled(scale, smoke=32, small=32, medium=32, full=256),  # [CAS, §4.2]: 256 x 256 at full scale
            "n_train": scaled(scale, smoke=32, small=256, medium=1024, full=None),  # full: MSRA-B's train split
            "n_val": scaled(scale, smoke=16, small=64, medium=128, full=None),  # the read-out's; full: MSRA-B's val
            "n_test": scaled(scale, smoke=16, small=200, medium=500, full=None),  # full: the seven test sets
            "object_radius": list(_OBJECT_RADIUS[p["scenes"]]),
            "texture_scale": 4,  # scikit-image textures are 512 px; pooled 4x so that 32 px show several texels
            "swap_p": 0.5,  # [CAS, §5]: "probability of incorrect region label of 0.5", per image
            "seed": seed,
            "batch_size": 16,  # the DataLoader's at full scale (the same as the training's)
            "workers": scaled(scale, smoke=0, small=0, medium=0, full=4),
        }
        # The small FCN at every scale; the ResNet-FCN is cut for a CPU, and at full scale it is the paper's
        # torchvision fcn_resnet101 (randomly initialised, as the paper's "no pre-training").
        if p["net"] == "fcn":
            model = {"name": "small_fcn", "width": 16}
        else:
            model = {"name": "paper_model", "arch": "fcn_resnet101"} if full else {"name": "resnet_fcn",
                                                                                    "blocks": [1, 1]}
        # ours: Adam with a cosine schedule, batch 16 (the paper gives no batch size; the official code 40).
        # lr: 3e-3 for the small FCN (ours), 1e-3 for the ResNet-FCN ([CAS, §6]: "The learning rate was 1e-3
        # with Adam"; the official code 1e-4). Epochs per network, the same for every arm of that network.
        epochs = (scaled(scale, smoke=1, small=12, medium=40, full=40) if p["net"] == "fcn" else
                  scaled(scale, smoke=1, small=8, medium=30, full=40))
        train = TrainConfig(epochs=epochs, lr=3e-3 if p["net"] == "fcn" else 1e-3, batch_size=16,
                            optimizer="adam", schedule="cosine", seed=seed)
        loss = {"name": p["loss"], "labels": p["labels"], "alpha": 0.1}  # [CAS, §6]: "α was set to 0.1"
        return self.make_config(arm, seed, scale, train=train, data=data, model=model, loss=loss,
                                eval={"beta2": 0.3, "border": scaled(scale, smoke=2, small=2, medium=2, full=16),
                                      "monitor_n": scaled(scale, smoke=8, small=64, medium=128, full=128)})

    # -- data, model, loss, evaluation ----------------------------------------------------------

    def data(self, config):
        """``train`` (images with ``labels`` and ``labels_lfd``), ``val`` and ``test`` (name -> data)."""
        d = config.data
        if d["dataset"] == "msra_b":
            return _msra_b_data(d)
        from ..cas import permute_region_labels
        from ..data.saliency import make_saliency_scenes

        kw = dict(texture_scale=d["texture_scale"], object_radius=tuple(d["object_radius"]))
        # separate draws for training, validation and test: seeds 1000 + s, 2000 + s, 3000 + s
        train = make_saliency_scenes(d["n_train"], d["size"], seed=1000 + d["seed"], **kw)
        val = make_saliency_scenes(d["n_val"], d["size"], seed=2000 + d["seed"], **kw)
        test = make_saliency_scenes(d["n_test"], d["size"], seed=3000 + d["seed"], **kw)
        hfd = train["mask"].long()
        lfd, _ = permute_region_labels(hfd, 2, p=d["swap_p"], generator=torch.Generator().manual_seed(d["seed"]))
        return {"train": {"image": train["image"], "labels": hfd, "labels_lfd": lfd},
                "val": {"image": val["image"], "mask": val["mask"]},
                "test": {"synthetic": {"image": test["image"], "mask": test["mask"]}}}

    def model(self, config, data):
        from .. import models

        m = dict(config.model)
        if m["name"] == "small_fcn":
            return models.small_fcn(2, width=m["width"])
        if m["name"] == "resnet_fcn":
            return models.resnet_fcn(2, blocks=tuple(m["blocks"]))
        return models.paper_model(m["arch"], 2)

    def loss(self, config):
        from ..cas import CASLoss
        from ..losses import SymmetricCrossEntropy

        name, key = config.loss["name"], "labels" if config.loss["labels"] == "hfd" else "labels_lfd"
        if name == "ce":
            fn = F.cross_entropy
        elif name == "cace":
            fn = SymmetricCrossEntropy()
        else:
            fn = CASLoss(alpha=config.loss["alpha"])

        def loss_fn(model, batch):
            return fn(model(batch["image"]), batch[key])

        return loss_fn

    def evaluate(self, config, model, data):
        """Scores of both read-outs (and the diagnostics) on each test set; the first set's keys are
        unprefixed (``val.max_f``), the others' carry its name (``ecssd:val.max_f``)."""
        from ..cas import select_channel

        device = next(model.parameters()).device
        e, workers = config.eval, config.data["workers"]
        channel = select_channel(_predict(model, data["val"], device), data["val"]["mask"])
        out = {"val.channel": float(channel)}
        for i, (name, test) in enumerate(data["test"].items()):
            scores = _score(model, test, channel, e["beta2"], e["border"], device, workers)
            out.update({(f"{name}:" if i else "") + k: v for k, v in scores.items()})
        return out

    def monitor(self, config, data):
        n, ring, beta2 = config.eval["monitor_n"], config.eval["border"], config.eval["beta2"]
        val = {k: v[:n] for k, v in data["val"].items()}

        def fn(model):
            S = border_readout(_predict(model, val, next(model.parameters()).device), ring)
            acc = _Scores(beta2)
            acc.add(S, val["mask"])
            return {f"val_{k}": v for k, v in acc.result().items() if k in ("max_f", "mae")}

        return fn


# ----------------------------------------------------------------------------------------------
# Data at full scale
# ----------------------------------------------------------------------------------------------


class _BothLabels(torch.utils.data.Dataset):
    """Samples of a saliency dataset with their correct ``labels`` and an LFD relabelling ``labels_lfd``."""

    def __init__(self, dataset, p: float, seed: int):
        from ..cas import LowFidelityLabels

        self.lfd = LowFidelityLabels(dataset, 2, p, seed)  # the swap of each image drawn once, from `seed`

    def __len__(self) -> int:
        return len(self.lfd)

    def __getitem__(self, i: int) -> dict:
        s = self.lfd[i]  # `labels` relabelled, `mask` the truth
        return {"image": s["image"], "labels": s["mask"].long(), "labels_lfd": s["labels"]}


def _msra_b_data(d):
    """MSRA-B's official split [CAS, Table 1: "Low-fidelity training on MSRA-B"; its "6:4" is train + val :
    test]: train for training, val (500 images) for the read-out, and the paper's seven test sets, MSRA-B's
    test split first (the main column of its tables)."""
    from torch.utils.data import DataLoader

    from ..data.saliency import SOD_TEST_SETS, SaliencyDataset

    def split(name):
        return SaliencyDataset("msra_b", size=d["size"], download=True, split=name)

    train = _BothLabels(split("train"), d["swap_p"], d["seed"])
    loader = DataLoader(train, batch_size=d["batch_size"], shuffle=True, drop_last=True, num_workers=d["workers"],
                        generator=torch.Generator().manual_seed(d["seed"]))
    val = [s for s in split("val")]
    tests = {name: SaliencyDataset(name, size=d["size"], download=True, split="test" if name == "msra_b" else None)
             for name in SOD_TEST_SETS}
    return {"train": loader, "val": {"image": torch.stack([s["image"] for s in val]),
                                     "mask": torch.stack([s["mask"] for s in val])}, "test": tests}


# ----------------------------------------------------------------------------------------------
# Read-outs and scores (used by the experiment and by the chapter)
# ----------------------------------------------------------------------------------------------


def _batches(data, batch_size=100, workers=0):
    """Batches of ``image`` and ``mask`` from a dict of tensors or a dataset of dict samples."""
    if isinstance(data, dict):
        yield from iterate_batches({"image": data["image"], "mask": data["mask"]}, batch_size)
        return
    from torch.utils.data import DataLoader

    for b in DataLoader(data, batch_size=32, num_workers=workers):
        yield {"image": b["image"], "mask": b["mask"]}


@torch.no_grad()
def _predict(model, data, device, batch_size=100):
    """Softmax outputs ``(N, M, H, W)`` (CPU, float64) of ``model`` on a dict of tensors."""
    was = model.training
    model.eval()
    try:
        return torch.cat([model(b["image"].to(device)).softmax(1).cpu().double()
                          for b in iterate_batches({"image": data["image"]}, batch_size)])
    finally:
        model.train(was)


def border_readout(probs: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Per image, the channel of ``probs`` ``(N, M, H, W)`` with the lowest mean on the border.

    A label-free read-out for a loss that is invariant to permuting channels per image: salient
    objects rarely touch the image border, so the channel that is *least* present there is taken as
    the object's ("boundary prior"). ``width`` is the border's width in pixels. Returns ``(N, H, W)``.

    Example:
        >>> p = torch.zeros(2, 2, 6, 6); p[:, 0] = 1; p[:, 0, 2:4, 2:4] = 0; p[:, 1] = 1 - p[:, 0]
        >>> p[1] = p[1].flip(0)                      # second image: the object on channel 0
        >>> border_readout(p, 1)[:, 2, 2].tolist()   # the object's pixel reads 1 in both
        [1.0, 1.0]
    """
    ring = torch.ones(probs.shape[-2:], dtype=torch.bool, device=probs.device)
    ring[width:-width, width:-width] = False
    pick = probs[..., ring].mean(-1).argmin(1)                                  # (N,)
    return probs.gather(1, pick[:, None, None, None].expand(-1, 1, *probs.shape[-2:]))[:, 0]


def polarity(S: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per image ``(N,)`` bool: does the map ``S`` correlate positively with the ground-truth mask?

    It reads the ground truth, so it is a *diagnostic* of a read-out, never a read-out.
    """
    s = S.flatten(1) - S.flatten(1).mean(1, keepdim=True)
    g = masks.flatten(1).double()
    return (s * (g - g.mean(1, keepdim=True))).sum(1) > 0


class _Scores:
    """Saliency scores accumulated over batches, equal to computing them on the whole set at once."""

    def __init__(self, beta2: float):
        self.beta2, self.n, self.f_curve = beta2, 0, 0.0
        self.sums = dict.fromkeys(("adaptive_f", "mae", "s", "tp", "pos", "pred", "pixels"), 0.0)

    def add(self, S, masks):
        from .. import metrics

        S, nb = S.clamp(0, 1).double(), len(S)
        f = metrics.fbeta_scores(S, masks, beta2=self.beta2, average="f", return_curves=True)
        self.f_curve = self.f_curve + nb * f["f"]                      # per-image F curves, summed
        B = S > 0.5
        for key, value in (("adaptive_f", nb * f["adaptive_f"]), ("mae", nb * metrics.mae(S, masks)),
                           ("s", nb * metrics.s_measure(S, masks)), ("tp", (B & masks).sum()),
                           ("pos", masks.sum()), ("pred", B.sum()), ("pixels", B.numel())):
            self.sums[key] += float(value)
        self.n += nb

    def result(self) -> dict:
        s, n = self.sums, self.n
        return {"max_f": float((self.f_curve / n).max()), "adaptive_f": s["adaptive_f"] / n, "mae": s["mae"] / n,
                "s": s["s"] / n, "recall": s["tp"] / s["pos"] if s["pos"] else 0.0,
                "precision": s["tp"] / s["pred"] if s["pred"] else 0.0, "predicted": s["pred"] / s["pixels"]}


def readout_scores(S: torch.Tensor, masks: torch.Tensor, beta2: float = 0.3) -> dict:
    """Saliency scores of maps ``S`` ``(N, H, W)`` in [0, 1] against ``masks`` ``(N, H, W)`` bool.

    ``max_f`` and ``adaptive_f`` (F-β, β² = 0.3, per-image F curves averaged as PySODMetrics does),
    ``mae`` (on the continuous map, the paper's definition), ``s`` (S-measure) and, at the network's
    own operating point ``S > 0.5`` (the argmax of two channels), ``recall``, ``precision`` (0 when
    nothing is predicted) and ``predicted`` (the fraction of pixels called salient), pooled over all
    pixels.
    """
    acc = _Scores(beta2)
    acc.add(S, masks)
    return acc.result()


@torch.no_grad()
def _score(model, test, channel, beta2, width, device, workers=0):
    """Both read-outs' scores and the diagnostics of ``model`` on one test set."""
    was = model.training
    model.eval()
    acc = {"val": _Scores(beta2), "border": _Scores(beta2), "oracle": _Scores(beta2)}
    agree = border_right = same = n = 0
    try:
        for b in _batches(test, workers=workers):
            probs = model(b["image"].to(device)).softmax(1).cpu().double()
            masks = b["mask"]
            S, Sb = probs[:, channel], border_readout(probs, width)
            pol = polarity(S, masks)
            acc["val"].add(S, masks)
            acc["border"].add(Sb, masks)
            acc["oracle"].add(torch.where(pol[:, None, None], S, 1 - S), masks)
            agree, same, n = agree + int(pol.sum()), same + int((Sb == S).flatten(1).all(1).sum()), n + len(S)
            border_right += int(polarity(Sb, masks).sum())
    finally:
        model.train(was)
    out = {f"{name}.{k}": v for name in ("val", "border") for k, v in acc[name].result().items()}
    # diagnostics with the test masks (never in a claim): the share of images whose object lands on the
    # paper's channel, the share whose border read-out correlates positively with the object, the share
    # where the border read-out takes the paper's channel, and max F if every image were read with its
    # own polarity
    out.update({"diag.polarity": agree / n, "diag.border_polarity": border_right / n,
                "diag.border_agrees": same / n,
                "diag.oracle_max_f": acc["oracle"].result()["max_f"]})
    return out


#: What the ``full`` configuration costs: an ESTIMATE (the paper trains "until convergence" on one Quadro RTX
#: 6000 and gives no time; the official code runs 1500 epochs of batch 40). Per arm: 40 epochs of
#: floor(2,500 / 16) = 156 steps of 16 images of MSRA-B's training split = 99,840 images at 256 x 256. FLOPs
#: counted with ``torch.utils.flop_counter`` (meta device): torchvision's fcn_resnet101 (2 classes) 324 GFLOP
#: forward + backward per 256^2 image, so 3.2e16 FLOP per ResNet arm, ~0.9 GPU-hour at an ASSUMED effective
#: 10 TFLOP/s, plus the seven test sets (~24,700 images, ~108 GFLOP forward each: minutes). The small FCN's
#: arms are bound by data loading, not FLOPs: allow ~0.2 GPU-hour each. 4 ResNet arms + 6 small-FCN arms
#: (with ``imb_*``): ~5 GPU-hours. Downloads: MSRA-B, DUTS-TE, ECSSD, PASCAL-S, HKU-IS (a RAR, unpacked by
#: hand), THUR15K, DUT-OMRON; their sizes are not registered.
FULL_COST = {"gpu_hours_per_resnet_arm": 0.9, "gpu_hours_per_fcn_arm": 0.2, "resnet_arms": 4, "fcn_arms": 6,
             "gflop_per_image": {"fcn_resnet101_fwd_bwd_256": 324.0}, "images_per_arm": 99840,
             "assumed": {"tflops_effective": 10.0}}


EXPERIMENT = CASExperiment()
