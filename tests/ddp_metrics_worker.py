"""One process of tests/test_distributed.py's metric-reduction test; run by ``torchrun --nproc-per-node=2``.

Every process builds the same data set of ``sum(SIZES)`` images (seeded), takes its own, uneven
part of it (process ``r`` the ``r``-th block of ``SIZES[r]`` images), feeds it to the stateful
metrics of :mod:`pixelbook.metrics` in batches of 2, and computes them (torchmetrics adds the
states of the processes). Rank 0 then writes, to the JSON file named on the command line, those
values beside the same classes and the functional metrics on the whole data set in one process.
"""

from __future__ import annotations

import json
import sys

import torch

from pixelbook import distributed
from pixelbook import metrics as M

SIZES = (3, 5)  # images per process: uneven on purpose
C, H, W = 4, 10, 12


def dataset(n: int) -> dict:
    g = torch.Generator().manual_seed(1234)
    labels = torch.randint(0, C, (n, H, W), generator=g)
    labels[torch.rand(n, H, W, generator=g) < 0.1] = 255  # ignored pixels
    pred = torch.where(torch.rand(n, H, W, generator=g) < 0.7, labels.clamp(max=C - 1),
                       torch.randint(0, C, (n, H, W), generator=g))
    target = 0.5 + 4 * torch.rand(n, H, W, generator=g, dtype=torch.float64)
    depth = target * (1 + 0.3 * torch.randn(n, H, W, generator=g, dtype=torch.float64)).clamp(0.2, 3)
    valid = torch.rand(n, H, W, generator=g) < 0.8
    normals = torch.nn.functional.normalize(torch.randn(n, 3, H, W, generator=g, dtype=torch.float64), dim=1)
    noisy = torch.nn.functional.normalize(normals + 0.4 * torch.randn(n, 3, H, W, generator=g, dtype=torch.float64),
                                          dim=1)
    sal = torch.rand(n, H, W, generator=g) < 0.3
    probs = (0.6 * sal + 0.5 * torch.rand(n, H, W, generator=g)).clamp(0, 1)
    return dict(pred=pred, labels=labels, depth=depth, target=target, valid=valid, normals=noisy, normals_gt=normals,
                probs=probs, sal=sal)


def stateful(**kw):
    return {"miou": M.MeanIoU(C, **kw), "acc": M.PixelAccuracy(C, **kw), "depth": M.DepthMetrics(**kw),
            "normals": M.NormalMetrics(**kw), "saliency": M.SaliencyMetrics(**kw)}


def feed(ms: dict, d: dict) -> None:
    for i in range(0, len(d["pred"]), 2):
        b = {k: v[i:i + 2] for k, v in d.items()}
        ms["miou"].update(b["pred"], b["labels"])
        ms["acc"].update(b["pred"], b["labels"])
        ms["depth"].update(b["depth"], b["target"], b["valid"])
        ms["normals"].update(b["normals"], b["normals_gt"], b["valid"])
        ms["saliency"].update(b["probs"], b["sal"])


def plain(values: dict) -> dict:
    out = {}
    for name, v in values.items():
        if isinstance(v, dict):
            out.update({f"{name}.{k}": float(x) for k, x in v.items()})
        else:
            out[name] = float(v)
    return out


def main(path: str) -> None:
    ctx = distributed.setup("cpu")
    assert ctx.world_size == len(SIZES), f"run with --nproc-per-node={len(SIZES)}"
    data = dataset(sum(SIZES))
    start = sum(SIZES[:ctx.rank])
    mine = {k: v[start:start + SIZES[ctx.rank]] for k, v in data.items()}
    ms = stateful()
    feed(ms, mine)
    reduced = plain({k: m.compute() for k, m in ms.items()})
    gathered = distributed.all_gather_object(reduced)
    if ctx.is_main:
        single = stateful(sync_on_compute=False)  # one process, the whole data set
        feed(single, data)
        functional = plain({
            "miou": M.mean_iou(data["pred"], data["labels"], C), "acc": M.pixel_accuracy(data["pred"], data["labels"]),
            "depth": M.depth_metrics(data["depth"], data["target"], data["valid"]),
            "normals": M.normal_metrics(data["normals"], data["normals_gt"], data["valid"]),
            "saliency": {**M.fbeta_scores(data["probs"], data["sal"]), "mae": M.mae(data["probs"], data["sal"])}})
        with open(path, "w") as f:
            json.dump({"per_rank": gathered, "single": plain({k: m.compute() for k, m in single.items()}),
                       "functional": functional}, f)
    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1])
