"""Chapter 3's experiment: Soft Threshold Dynamics trained in the network, at test time only, or not at all [STD].

Every arm trains the same small fully convolutional network (:func:`small_fcn`, about 5 k
parameters, receptive field 9 px) with the same data, optimiser, budget and seed on noisy binary
scenes (one star, ellipse or holed ellipse per image, two distractor disks with the object's
intensity but the background's label, one dark notch inside the object;
:func:`pixelbook.data.shapes.make_shape_scenes`). The arms differ in the head the network is
trained with and in the read-out used at test time:

- ``softmax``: trained and read out with a softmax (no regulariser);
- ``std_post``: the same softmax-trained network, read out through the same STD layer as the
  ``std`` arm (T = 10, λ = 1, ε = 0.5, the PSD 7×7 kernel) applied **only at test
  time**, as CRF post-processing is — the alternative the paper argues against (Sec. 1: a
  post-processing "could not back propagate the regularization prior to the parameter updating");
- ``std``: trained and read out with the STD layer as the last layer [STD, Sec. 3.6];
- ``ss_std``: the ``std`` arm's network read out with the star-shape STD (SS-STD, T = 50,
  centre = the centroid of the ground-truth object: the paper's oracle protocol) [STD, Sec. 3.8].

``std_post`` retrains the ``softmax`` network and ``ss_std`` the ``std`` network: one results file
per arm and seed is the machinery's unit, and training is deterministic on a CPU, so the two
copies are the same network (the notebook checks this: each arm also records the read-outs of
its twin). Each seed draws its own scenes (training, held-out, and the star and annulus control
sets), its own initial weights and batch order; the arms of one seed share the scenes, so the
claims compare arms seed by seed. The claims below were committed before the ``medium`` results
existed (git history).

At ``full`` scale (:data:`FULL_DATA`, :data:`FULL_MODEL`, :data:`FULL_STD`, :data:`FULL_TRAIN`; cost:
:data:`FULL_COST`) the experiment is the paper's ISIC 2018 one [STD, Sec. 4.3.3, Table 7]: a
DeepLabV3-ResNet50 with a softmax or an STD head trained on the star-shaped lesions, evaluated on the
held-out 20 %. Only ``softmax`` and ``std`` train there; each records its twin's read-outs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..results import Claim
from ..runtime import scaled
from ..training import TrainConfig
from .base import Arm, Experiment

__all__ = ["SoftThresholdExperiment", "EXPERIMENT", "small_fcn", "WithHead", "raw_logits", "FULL_DATA",
           "FULL_MODEL", "FULL_STD", "FULL_TRAIN", "FULL_COST"]

_TRAINED_WITH = {"softmax": "softmax", "std_post": "softmax", "std": "std", "ss_std": "std"}


def small_fcn(num_classes: int, width: int = 16) -> nn.Sequential:
    """Three 3×3 conv-BN-ReLU layers (the middle one dilated by 2) and a 1×1 classifier.

    Receptive field 9 px; with ``width=16`` and one input channel, 4,930 parameters for two classes.
    """
    layers, cin = [], 1
    for dilation in (1, 2, 1):
        layers += [nn.Conv2d(cin, width, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(width), nn.ReLU()]
        cin = width
    return nn.Sequential(*layers, nn.Conv2d(width, num_classes, 1))


class WithHead(nn.Module):
    """A network whose scores go through ``head`` (an STD layer with ``output="log_probs"``) or ``log_softmax``.

    ``forward(image, **prior)`` returns ``(N, C, H, W)`` log-probabilities; ``prior`` (``volumes=``,
    ``center=``) goes to the head. ``self.net(image)`` are the raw scores :math:`o`.
    """

    def __init__(self, net: nn.Module, head: nn.Module | None = None):
        super().__init__()
        self.net, self.head = net, head

    def forward(self, x, **prior):
        o = self.net(x)
        o = o["out"] if isinstance(o, dict) else o  # torchvision segmentation models return a dict
        return F.log_softmax(o, 1) if self.head is None else self.head(o, **prior)


def raw_logits(model: WithHead, images: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """The scores :math:`o` of ``model.net`` (before any head) on ``(N, 1, H, W)`` images, on the CPU.

    Runs in eval mode under ``no_grad``, ``batch`` images at a time, on the model's device.
    """
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model.net(images[i:i + batch].to(device)).cpu() for i in range(0, len(images), batch)])


class SoftThresholdExperiment(Experiment):
    chapter = "03_soft_threshold_dynamics"
    title = "Soft Threshold Dynamics: a spatial prior in the network, at test time, or not at all"
    arms = (
        Arm("softmax", "softmax head in training and at test time (no regulariser)", {"head": "softmax"}),
        Arm("std_post", "softmax-trained network, STD applied only at test time (post-processing)",
            {"head": "softmax", "readout": "std"}),
        Arm("std", "STD head (T = 10) in training and at test time [STD, Sec. 3.6]", {"head": "std"}),
        Arm("ss_std", "the STD-trained network read out with SS-STD (T = 50, oracle centre) [STD, Sec. 3.8]",
            {"head": "std", "readout": "ss_std"}),
    )
    # medium: 5 seeds; the effects the paper reports are about one mIoU point (below) and may be
    # within two seed spreads here (issue 10: "5 where the effect is within 2 spreads").
    seeds = {"smoke": (0,), "small": (0,), "medium": (0, 1, 2, 3, 4), "full": (0,)}
    # full: each network is trained once (two DeepLabV3-ResNet50, ~20 GPU-hours each: FULL_COST); the
    # twin arms' read-outs are recorded by the arm that trains their network (see `readouts`).
    skip_arms = {"full": {"std_post": "it is the softmax network read out with the STD layer; the softmax arm's "
                                      "results record that read-out (isic.std.miou, isic.std_lam*.miou)",
                          "ss_std": "it is the std network read out with SS-STD; the std arm's results record that "
                                    "read-out (isic.ss_std.miou, isic.ss_std_est.miou; also isic.vp_std.miou)"}}
    # Written, and committed, before any medium result existed (no pilot was run: the margins come
    # from the paper and the method, not from a run at this scale). mIoU is the dataset-wide mean
    # IoU of the two classes on the seed's 200 held-out scenes.
    #
    # The paper's held-out gain of the STD layer over the softmax is about one mIoU point: PASCAL VOC
    # 2012 test 83.60 -> "about 1 % higher" (Table 4; its val numbers are on training images), ISIC
    # 2018 89.77 -> 91.02 (Table 7). As Chapter 1 does, we ask for half the paper's gain, 0.005, in
    # the same units (our scenes are synthetic and small; halving allows a smaller effect while still
    # asking for more than a tie), on 4 of 5 seeds (with no effect, a difference beats a margin
    # >= 0 on >= 4 of 5 seeds with probability <= 6/32).
    claims = (
        Claim("std_beats_softmax", "Training with the STD layer as the last layer raises mIoU over the softmax "
              "network", metric="shapes.miou", arm_a="std", arm_b="softmax", margin=0.005, k=4, n=5,
              paper="VOC 2012 test 83.60 -> about 84.6; ISIC 2018 89.77 -> 91.02 (DeepLabV3+; Tables 4, 7)"),
        # The paper's argument (Sec. 1, Sec. 5): post-processing acts only in the forward pass, the STD
        # layer in both. It gives no number for it; we ask the trained layer to beat the same layer
        # applied only at test time by the same half point, 4 of 5 seeds.
        Claim("trained_beats_post", "Training through the STD layer beats applying the same layer only at test time "
              "to a softmax-trained network", metric="shapes.miou", arm_a="std", arm_b="std_post", margin=0.005,
              k=4, n=5, paper="argued (Secs. 1, 5: forward and backward vs forward only), no number",
              expected=False),  # set after the medium run: it did not hold (Chapter 3, section 14)
        # The same network read out two ways; the claim is only the direction (margin 0), 4 of 5 seeds.
        Claim("post_helps_softmax", "The STD layer applied at test time only still raises the softmax network's "
              "mIoU", metric="shapes.miou", arm_a="std_post", arm_b="softmax", margin=0.0, k=4, n=5,
              paper="not tested (CRF post-processing helps DeepLab, Sec. 1)"),
        # Star prior, positive control: the paper's gain of SS-STD over STD on ISIC 2018's star-shaped
        # lesions is 91.57 - 91.02 = 0.55 points (Table 7, oracle centres); half of it, rounded up: 0.003.
        Claim("star_helps_stars", "The star-shape prior (SS-STD, oracle centre) raises mIoU on star-shaped objects",
              metric="stars.miou", arm_a="ss_std", arm_b="std", margin=0.003, k=4, n=5,
              paper="ISIC 2018 star subset: STD 91.02 -> SS-STD 91.57 (Table 7, oracle centres)",
              expected=False),  # set after the medium run: it did not hold (Chapter 3, section 14)
        # Negative control: an annulus is not star-shaped about its centroid, which lies in the hole
        # (background); monotonicity towards it must fill the hole or erase the ring, so the prior
        # must lower mIoU. Direction only (margin 0) on every seed (probability 1/32 with no effect).
        Claim("star_hurts_annuli", "The star-shape prior lowers mIoU on annuli (not star-shaped about the centroid)",
              metric="annuli.miou", arm_a="std", arm_b="ss_std", margin=0.0, k=5, n=5,
              paper="not tested in the paper (a negative control)"),
    )
    replay_arm = "std"

    # -- configuration --------------------------------------------------------------------------

    def config(self, arm, seed, scale):
        p = arm.params
        if scale == "full":
            return self._full_config(arm, seed)
        data = {
            # "mixed" binary scenes; the notebook also runs "voronoi" (4 classes, noise 0.3) through
            # `EXP.run(..., data={"kind": "voronoi", "num_classes": 4, "noise": 0.3})`, without control sets
            "kind": "mixed", "num_classes": 2,
            "size": scaled(scale, smoke=32, small=48, medium=48, full=48),
            "n_train": scaled(scale, smoke=32, small=240, medium=480, full=480),
            "n_test": scaled(scale, smoke=16, small=100, medium=200, full=200),
            "noise": 0.8,  # std of the pixel noise; object and background intensities are 1 and 0 (ours)
            "distractors": 2, "notches": 1,  # the training and held-out scenes ("mixed": star, ellipse, holes)
            "star_distractors": 3, "star_notches": 2,  # the star control set (positive for SS-STD)
            "annulus_distractors": 2,  # the annulus control set (negative: not star-shaped about its centroid)
            # each seed its own scenes; seed 0 draws the scenes of earlier versions of the chapter
            "seed_train": 10 * seed + 1, "seed_test": 10 * seed + 2, "seed_stars": 10 * seed + 5,
            "seed_annuli": 10 * seed + 6,
        }
        # The STD layer of the paper (Sec. 3.6) with our choices: T = 10 and lambda = 1 as the paper;
        # epsilon = 0.5 for these small networks (the chapter's section 11 says why); the PSD 7x7
        # Gaussian with sigma = 1 (the paper's sigma = 5 is not PSD, section 5).
        std = {"iterations": 10, "lam": 1.0, "epsilon": 0.5, "kernel_size": 7, "sigma": 1.0}
        model = {"name": "small_fcn", "width": 16, "head": p["head"], **({"std": std} if p["head"] == "std" else {})}
        # ours: Adam at 1e-2 with a cosine schedule, batch 16. `small` is the chapter's live demo
        # (< 120 s in all); `medium` doubles the data and trains 20 epochs (600 steps, 6.7x `small`), sized
        # by the time of a few steps (about 0.1 s each on one core) so that 4 arms x 5 seeds take < 25 min
        # of one core; the recorded histories (val_miou per epoch) show whether it converged.
        train = TrainConfig(epochs=scaled(scale, smoke=1, small=6, medium=20, full=20), lr=1e-2,
                            batch_size=16, optimizer="adam", schedule="cosine", seed=seed)
        evals = {"std": std, "star_iterations": 50, "readout": p.get("readout", p["head"]),
                 "post_lams": [0.5, 2.0, 4.0], "monitor_n": scaled(scale, smoke=8, small=50, medium=100, full=100)}
        return self.make_config(arm, seed, scale, train=train, data=data, model=model, eval=evals)

    def _full_config(self, arm, seed):
        p = arm.params
        model = {**FULL_MODEL, "head": p["head"], **({"std": dict(FULL_STD)} if p["head"] == "std" else {})}
        evals = {"std": dict(FULL_STD), "star_iterations": 50, "readout": p.get("readout", p["head"]),
                 "post_lams": [0.5, 1.0, 1.25], "monitor_n": 100}
        return self.make_config(arm, seed, "full", train=TrainConfig(**FULL_TRAIN, seed=seed),
                                data={**FULL_DATA, "seed": seed}, model=model, eval=evals)

    # -- data, model, loss, evaluation ----------------------------------------------------------

    def data(self, config):
        from ..data.shapes import make_shape_scenes

        d = config.data
        if d.get("dataset") == "isic2018":
            return _isic_data(d)
        keep = ("image", "labels")

        def scenes(n, kind, distractors, notches, seed):
            if kind == "voronoi":
                s = make_shape_scenes(n, d["size"], kind, d["noise"], num_classes=d["num_classes"], seed=seed)
            else:
                s = make_shape_scenes(n, d["size"], kind, d["noise"], distractors=distractors, notches=notches,
                                      seed=seed)
            return {k: s[k] for k in keep}

        out = {"train": scenes(d["n_train"], d["kind"], d["distractors"], d["notches"], d["seed_train"]),
               "test": scenes(d["n_test"], d["kind"], d["distractors"], d["notches"], d["seed_test"])}
        if d["kind"] != "voronoi":  # the control sets of the star prior are binary
            out["stars"] = scenes(d["n_test"], "star", d["star_distractors"], d["star_notches"], d["seed_stars"])
            out["annuli"] = scenes(d["n_test"], "annulus", d["annulus_distractors"], 0, d["seed_annuli"])
        return out

    def model(self, config, data):
        from ..std import STD

        m = config.model
        head = None
        if m["head"] == "std":
            s = m["std"]
            head = STD(s["iterations"], s["lam"], s["epsilon"], s["kernel_size"], s["sigma"], output="log_probs")
        if m["name"] == "deeplabv3_resnet50":
            from ..models import deeplabv3_resnet50

            net = deeplabv3_resnet50(config.data["num_classes"], output_stride=m["output_stride"],
                                     weights=m["weights"], weights_backbone=m["weights_backbone"])
            return WithHead(net, head)
        return WithHead(small_fcn(config.data["num_classes"], m["width"]), head)

    def loss(self, config):
        def loss_fn(model, batch):
            return F.nll_loss(model(batch["image"]), batch["labels"])

        return loss_fn

    def readouts(self, config, logits, labels):
        """``{name: (N, H, W) prediction}`` for every read-out this arm records on one scene set.

        ``logits`` are the network's raw scores; ``labels`` the ground truth (only the SS-STD
        read-out uses it, for the oracle centre). The arm's own read-out is ``"arm"``.
        """
        from .. import std as S

        e = config.eval
        s = e["std"]
        kernel = S.gaussian_kernel(s["kernel_size"], s["sigma"])

        def std_readout(lam, **prior):
            iterations = e["star_iterations"] if "center" in prior else s["iterations"]
            return S.soft_threshold_dynamics(logits, iterations=iterations, lam=lam, epsilon=s["epsilon"],
                                             kernel=kernel, **prior).argmax(1)

        full = config.scale == "full"  # there the network's own arm records its twin's read-outs (skip_arms)
        out = {"argmax": logits.argmax(1), "std": std_readout(s["lam"])}
        if config.eval["readout"] == "ss_std" or (full and config.arm == "std"):  # binary: class 1 is the object
            out["ss_std"] = std_readout(s["lam"], center=S.centroid(labels.float()))
            out["ss_std_est"] = std_readout(s["lam"], center=S.centroid(torch.softmax(logits, 1)[:, 1]))
        if full and config.arm == "std":  # VP-STD with the ground truth's volumes: the paper's oracle [STD, Table 7]
            counts = F.one_hot(labels.long(), logits.shape[1]).flatten(1, 2).sum(1).to(logits.dtype).clamp(min=1)
            out["vp_std"] = std_readout(s["lam"], volumes=counts * (labels[0].numel() / counts.sum(1, keepdim=True)))
        if config.arm == "std_post" or (full and config.arm == "softmax"):
            out.update({f"std_lam{lam:g}": std_readout(lam) for lam in e["post_lams"]})
        out["arm"] = out[{"softmax": "argmax", "std": "std", "ss_std": "ss_std"}[config.eval["readout"]]]
        return out

    def evaluate(self, config, model, data):
        from .. import std as S
        from ..metrics import mean_iou

        if config.scale == "full":
            return self._evaluate_full(config, model, data["val"])
        metrics, classes = {}, config.data["num_classes"]
        for name in ("test", "stars", "annuli"):
            if name not in data:
                continue
            images, labels = data[name]["image"], data[name]["labels"]
            prefix = "shapes" if name == "test" else name
            for readout, pred in self.readouts(config, raw_logits(model, images), labels).items():
                key = prefix if readout == "arm" else f"{prefix}.{readout}"
                metrics[f"{key}.miou"] = mean_iou(pred, labels, classes)
                if readout == "arm":  # descriptive: boundary length (prediction / truth), components per image
                    length = S.boundary_length(pred).sum() / S.boundary_length(labels).sum()
                    metrics[f"{key}.length_ratio"] = float(length)
                    metrics[f"{key}.components"] = float(S.count_components(pred).float().mean())
                    if classes == 2:  # star violations about the ground-truth object's centroid
                        centre = S.centroid(labels.float())
                        metrics[f"{key}.star_violations"] = float(S.star_violations(pred == 1, centre).float().mean())
        return metrics

    def _evaluate_full(self, config, model, val, n=None, readouts=True) -> dict:
        """mIoU of every read-out on ISIC's held-out lesions (whole set, summed over processes).

        Per read-out, a 2x2 confusion matrix over all pixels of the held-out images; for the arm's
        own read-out also the boundary-length ratio (prediction / truth, pooled), the mean number of
        components and of star violations per image, as at the other scales.
        """
        from .. import metrics
        from .. import std as S
        from ._full import all_reduce_sum, eval_samples

        device = next(model.parameters()).device
        cms, sums = {}, torch.zeros(5, dtype=torch.float64)  # length pred, length truth, components, violations, n
        model.eval()
        with torch.no_grad():
            for b in eval_samples(val, config.data["workers"], n):
                image, labels = b["image"].to(device), b["labels"].to(device)
                if readouts:
                    preds = self.readouts(config, model.net(image), labels)
                else:
                    preds = {"arm": model(image).argmax(1)}
                for name, pred in preds.items():
                    cm = metrics.confusion_matrix(pred.cpu(), labels.cpu(), 2)
                    cms[name] = cms[name] + cm if name in cms else cm
                if readouts:
                    pred, truth = preds["arm"].cpu(), labels.cpu()
                    sums += torch.tensor([float(S.boundary_length(pred).sum()), float(S.boundary_length(truth).sum()),
                                          float(S.count_components(pred).sum()),
                                          float(S.star_violations(pred == 1, S.centroid(truth.float())).sum()),
                                          len(pred)], dtype=torch.float64)
        if not cms:  # an empty shard (more processes than held-out images): zero counts, the same names,
            with torch.no_grad():  # so that every process joins the same all-reduces
                b = val[0]
                image, labels = b["image"][None].to(device), b["labels"][None].to(device)
                names = self.readouts(config, model.net(image), labels) if readouts else {"arm": None}
            cms = {name: torch.zeros(2, 2, dtype=torch.int64) for name in names}
        sums = all_reduce_sum(sums)
        out = {}
        for name in sorted(cms):
            cm = all_reduce_sum(cms[name])
            out["isic.miou" if name == "arm" else f"isic.{name}.miou"] = metrics.mean_iou_from_confusion(cm)
        if readouts:
            out.update({"isic.length_ratio": float(sums[0] / sums[1]), "isic.components": float(sums[2] / sums[4]),
                        "isic.star_violations": float(sums[3] / sums[4])})
        return out

    def monitor(self, config, data):
        from ..metrics import mean_iou

        if config.scale == "full":  # the arm's head, argmax, on the first held-out lesions
            def fn_full(model):
                out = self._evaluate_full(config, model, data["val"], n=config.eval["monitor_n"], readouts=False)
                return {"val_miou": out["isic.miou"]}

            return fn_full
        n = config.eval["monitor_n"]
        images, labels = data["test"]["image"][:n], data["test"]["labels"][:n]

        def fn(model):  # fit calls it in eval mode, under no_grad
            pred = model(images.to(next(model.parameters()).device)).argmax(1).cpu()
            return {"val_miou": mean_iou(pred, labels, config.data["num_classes"])}

        return fn


def _isic_data(d):
    """The paper's ISIC 2018 protocol (:func:`pixelbook.data.isic.isic2018_star_splits`): the star-shaped
    lesions split 80 / 20 at random, resized to ``size`` square, training images flipped at random."""
    from torch.utils.data import Subset

    from ..data.isic import isic2018_star_splits
    from ._full import ISIC_HOW, open_dataset, train_loader

    train, val = open_dataset(lambda: isic2018_star_splits(d["root"], size=d["size"], max_violation=d["max_violation"],
                                                           val_fraction=d["val_fraction"], seed=d["split_seed"],
                                                           download=d["download"]), ISIC_HOW)
    if d["n_train"] is not None:
        train = Subset(train, range(min(d["n_train"], len(train))))
    return {"train": train_loader(train, d["batch_size"], d["seed"], d["workers"]), "val": val}


# ----------------------------------------------------------------------------------------------
# Full scale: ISIC 2018, the dataset of the paper's star prior [STD, Sec. 4.3.3, Table 7]
# ----------------------------------------------------------------------------------------------

#: ISIC 2018 Task 1, the star-shaped lesions (our criterion: at most 1 % of a lesion's pixels violate
#: the star constraint about its centroid; the paper kept 2,198 of 2,594 without saying how), split
#: 80 / 20 at random (the paper: 1,758 / 440), 2 classes. Images and masks resized to 513 x 513: the
#: paper's crop is 513 ("other parameters as for VOC", note 001 §3.2, inferred); the square resize
#: of :class:`pixelbook.data.isic.ISIC2018` is ours (the paper's TF DeepLab crops at random).
FULL_DATA = {"dataset": "isic2018", "root": None, "download": True, "num_classes": 2, "size": 513,
             "max_violation": 0.01, "val_fraction": 0.2, "split_seed": 0, "n_train": None, "batch_size": 16,
             "workers": 4}
#: The network: torchvision's DeepLabV3-ResNet50 trained on a COCO subset with the VOC categories
#: (output stride 8), its classifier replaced by a 2-class one. The paper fine-tunes DeepLabV3+ with an
#: Xception-65 backbone from ``xception65_coco_voc_trainaug`` (COCO, then VOC trainaug) [STD, Sec. 4.3];
#: torchvision has no Xception, so the nearest COCO + VOC-label network it ships is ours.
FULL_MODEL = {"name": "deeplabv3_resnet50", "output_stride": 8, "weights": "COCO_WITH_VOC_LABELS_V1",
              "weights_backbone": None}
#: The STD layer on ISIC [STD, Sec. 4.3.3]: "for STD based layers" lambda = 0.75, epsilon = 0.1; the 7 x 7
#: Gaussian with sigma = 5 (Sec. 4.2; not PSD: the chapter's section 5 — energy descent is then not
#: guaranteed, but it is what the paper ran); T = 10 (STD) and 50 (SS-STD), on the scores up-sampled
#: to the image, as TF DeepLab computes its loss.
FULL_STD = {"iterations": 10, "lam": 0.75, "epsilon": 0.1, "kernel_size": 7, "sigma": 5.0}
#: Training [STD, Sec. 4.3.1, "as for VOC" on ISIC]: batch 16, 50,000 iterations, learning rate 1e-4,
#: the same for the baseline and STD; optimiser, schedule and weight decay are TF DeepLab's defaults
#: (momentum 0.9, poly with power 0.9, weight decay 4e-5; research/deeplab/train.py). 459 epochs of
#: floor(1,758 / 16) = 109 steps = 50,031 iterations on the paper's 1,758 training images (another
#: subset size scales the count).
FULL_TRAIN = {"epochs": 459, "lr": 1e-4, "batch_size": 16, "optimizer": "sgd", "weight_decay": 4e-5,
              "schedule": "poly", "eval_every": 25}
#: What a full run costs: an ESTIMATE. (a) From the paper: Table 5 gives 1.21 iterations/s for
#: STD-DeepLabV3+ on its 4 V100s, so 50,000 iterations take ~11.5 h, ~46 V100-hours per model. (b)
#: From FLOPs counted with ``torch.utils.flop_counter`` on this network: 1,011 GFLOP forward + backward
#: per 513² image at output stride 8 (the STD layer adds < 0.1 %), x 50,031 x 16 images, at an assumed
#: effective 10 TFLOP/s: ~22 GPU-hours per model. Two models (softmax, std). Downloads: ISIC 2018
#: Task 1 ~10 GB (images) + masks; the COCO-VOC DeepLabV3 weights 161 MB.
FULL_COST = {"gpu_hours_per_model": 22.0, "paper_v100_hours_per_model": 46.0, "models": 2, "download_gb": 10.2}


EXPERIMENT = SoftThresholdExperiment()
