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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..results import Claim
from ..runtime import scaled
from ..training import TrainConfig
from .base import Arm, Experiment

__all__ = ["SoftThresholdExperiment", "EXPERIMENT", "small_fcn", "WithHead", "raw_logits"]

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
    seeds = {"smoke": (0,), "small": (0,), "medium": (0, 1, 2, 3, 4)}
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

    # -- data, model, loss, evaluation ----------------------------------------------------------

    def data(self, config):
        from ..data.shapes import make_shape_scenes

        d = config.data
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

        out = {"argmax": logits.argmax(1), "std": std_readout(s["lam"])}
        if config.eval["readout"] == "ss_std":  # binary scenes: class 1 is the object
            out["ss_std"] = std_readout(s["lam"], center=S.centroid(labels.float()))
            out["ss_std_est"] = std_readout(s["lam"], center=S.centroid(torch.softmax(logits, 1)[:, 1]))
        if config.arm == "std_post":
            out.update({f"std_lam{lam:g}": std_readout(lam) for lam in e["post_lams"]})
        out["arm"] = out[{"softmax": "argmax", "std": "std", "ss_std": "ss_std"}[config.eval["readout"]]]
        return out

    def evaluate(self, config, model, data):
        from .. import std as S
        from ..metrics import mean_iou

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

    def monitor(self, config, data):
        from ..metrics import mean_iou

        n = config.eval["monitor_n"]
        images, labels = data["test"]["image"][:n], data["test"]["labels"][:n]

        def fn(model):  # fit calls it in eval mode, under no_grad
            pred = model(images.to(next(model.parameters()).device)).argmax(1).cpu()
            return {"val_miou": mean_iou(pred, labels, config.data["num_classes"])}

        return fn


EXPERIMENT = SoftThresholdExperiment()
