"""A tiny experiment for the multi-process tests (tests/test_distributed.py): ``python -m pixelbook.run ddp_tiny:EXPERIMENT``.

Two pixel tasks on 12x12 synthetic images (3-class segmentation and a positive "depth"), a
network of two convolutions with GroupNorm (no BatchNorm: samples do not interact, so a batch split
over processes is the same computation), in float64, trained with SGD + momentum (a step is linear
in the gradient, so rounding differences stay rounding-sized). The loss is a mean over pixels of
equally many pixels per sample (cross-entropy without ignored pixels, L1 on depth), so the mean
over a batch is the mean of its samples' means, as ``fit``'s weighting assumes.

The batch (7) does not divide the training set (29): the shares of the processes are unequal
(4 + 3) and in the last batch (1 sample) one process has an empty share. Evaluation goes through
:func:`pixelbook.distributed.evaluate_metrics` with the stateful :class:`pixelbook.metrics.MeanIoU`,
:class:`~pixelbook.metrics.PixelAccuracy` and :class:`~pixelbook.metrics.DepthMetrics` on a
held-out set of 11 images (shares 6 + 5).

Test hooks: ``DDP_TINY_HOLD_AT_STEP=k`` makes the loss block at its ``k``-th call, so a test can
kill the run at a known point (after the checkpoint of the epoch before); ``DDP_TINY_WEIGHTS=DIR``
makes ``evaluate`` save each process's trained weights to ``DIR/weights-rank<r>.pt``.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from pixelbook.experiments import Arm, Experiment
from pixelbook.training import TrainConfig


class TinyNet(nn.Module):
    def __init__(self, width: int = 8, classes: int = 3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.GroupNorm(2, width), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.seg = nn.Conv2d(width, classes, 1)
        self.depth = nn.Conv2d(width, 1, 1)

    def forward(self, image):
        h = self.body(image)
        return {"seg": self.seg(h), "depth": F.softplus(self.depth(h)) + 0.1}


def make_data(n: int, seed: int, size: int = 12) -> dict:
    """Images whose class is the brightest channel (smoothed), depth a function of the image."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, size, size, generator=g, dtype=torch.float64)
    image = F.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
    labels = image.argmax(1)
    depth = 1.0 + 2.0 * image[:, 0] + image[:, 1] ** 2
    return {"image": image, "labels": labels, "depth": depth}


class TinyExperiment(Experiment):
    chapter = "97_ddp_tiny"
    title = "DDP tiny"
    arms = (Arm("net", "the tiny network"),)
    seeds = {"smoke": (0,)}

    def config(self, arm, seed, scale):
        train = TrainConfig(epochs=3, lr=0.05, batch_size=7, optimizer="sgd", schedule="cosine", seed=seed)
        return self.make_config(arm, seed, scale, train=train, data={"n_train": 29, "n_val": 11, "seed": seed},
                                model={"width": 8})

    def data(self, config):
        d = config.data
        return {"train": make_data(d["n_train"], d["seed"]), "val": make_data(d["n_val"], d["seed"] + 1000)}

    def model(self, config, data):
        return TinyNet(config.model["width"]).double()

    def loss(self, config):
        hold = int(os.environ.get("DDP_TINY_HOLD_AT_STEP", "0"))
        calls = [0]

        def loss_fn(model, batch):
            calls[0] += 1
            if hold and calls[0] >= hold:
                while True:  # the test kills us here
                    time.sleep(1)
            out = model(batch["image"])
            ce = F.cross_entropy(out["seg"], batch["labels"])
            l1 = (out["depth"][:, 0] - batch["depth"]).abs().mean()
            return ce + l1, {"ce": ce, "l1": l1}

        return loss_fn

    def evaluate(self, config, model, data):
        from pixelbook.distributed import evaluate_metrics, rank

        if os.environ.get("DDP_TINY_WEIGHTS"):
            torch.save(model.state_dict(), os.path.join(os.environ["DDP_TINY_WEIGHTS"], f"weights-rank{rank()}.pt"))
        from pixelbook.metrics import DepthMetrics, MeanIoU, PixelAccuracy

        def update(model, batch, metrics):
            out = model(batch["image"])
            pred = out["seg"].argmax(1)
            metrics["miou"].update(pred, batch["labels"])
            metrics["acc"].update(pred, batch["labels"])
            metrics["depth"].update(out["depth"][:, 0], batch["depth"])

        m = evaluate_metrics(model, data["val"], {"miou": MeanIoU(3), "acc": PixelAccuracy(3), "depth": DepthMetrics()},
                             update, batch_size=4)
        return {"seg.miou": m["miou"], "seg.acc": m["acc"], "depth.abs_rel": m["depth"]["abs_rel"],
                "depth.d1": m["depth"]["d1"], "depth.rmse": m["depth"]["rmse"]}


EXPERIMENT = TinyExperiment()
