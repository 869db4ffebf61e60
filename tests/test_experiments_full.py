"""The ``full`` configurations of Chapters 2, 3, 4 and 6 (VOC and BSDS500), end to end on fake datasets (CPU, seconds).

Each test builds a fake copy of the paper's dataset in the real layout (tests/fakes.py), shrinks
only the sizes (crop, epochs, batch, images) through the experiment's ``run_config`` overrides, and
runs the command ``python -m pixelbook.run <chapter> --scale full --arm ...`` in-process: the real
data loaders, the real network (DeepLabV3-ResNet50, randomly initialised: no download), the loss,
``fit``, the evaluation and the results file. The configurations themselves are checked against
the papers' numbers, and a missing dataset must fail with a message that says where to get it.
"""

from __future__ import annotations

import json

import pytest
import torch

from pixelbook import experiments
from pixelbook import run as run_cli


def shrink(monkeypatch, exp, overrides):
    """Make ``exp.run_config(arm, seed, "full")`` apply ``overrides`` (for the command line too)."""
    original = exp.run_config

    def run_config(arm, seed, scale, extra=None):
        merged = {k: {**overrides.get(k, {}), **(extra or {}).get(k, {})} for k in {*overrides, *(extra or {})}}
        return original(arm, seed, scale, merged if scale == "full" else extra)

    monkeypatch.setattr(exp, "run_config", run_config)


def run_full(tmp_path, chapter, arm, capsys):
    """``python -m pixelbook.run <chapter> --scale full --arm <arm> --device cpu``; the results record."""
    root = tmp_path / "results"
    code = run_cli.main([chapter, "--scale", "full", "--arm", arm, "--device", "cpu", "--results", str(root)])
    err = capsys.readouterr().err
    assert code == 0, err
    files = list(root.rglob(f"full-{arm}-seed0.json"))
    assert len(files) == 1
    return json.loads(files[0].read_text())


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIXELBOOK_PROGRESS", "0")
    torch.set_num_threads(1)
    return tmp_path


# ---------------------------------------------------------------------------------------------- Chapter 4


def test_rmi_full_config_is_the_papers_recipe():
    exp = experiments.get(4)
    assert exp.seeds_for("full") == (0,)
    cfg = exp.run_config("rmi_df4", 0, "full")
    t, d, m, loss = cfg.train, cfg.data, cfg.model, cfg.loss
    # [RMI, Sec. 5.1] and the official code (note 002 §3.2): 46 x floor(10582 / 16) = 30,406 iterations
    assert (t.epochs * (10582 // t.batch_size), t.lr, t.batch_size, t.warmup_steps) == (30406, 0.007, 16, 1500)
    assert (t.optimizer, t.schedule, t.weight_decay) == ("sgd", "poly", 1e-4)
    assert (d["dataset"], d["train_split"], d["test_split"], d["crop"]) == ("voc", "train_aug", "val", 513)
    assert d["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0] and d["batch_size"] == t.batch_size
    assert m == {"name": "deeplabv3_resnet50", "output_stride": 16, "weights_backbone": "IMAGENET1K_V1"}
    assert (loss["pool_size"], loss["radius"], loss["ce_weight"], loss["ignore_index"]) == (4, 3, 0.5, 255)
    camvid = exp.run_config("rmi", 0, "full", exp.full_overrides("camvid"))
    assert (camvid.train.epochs * (468 // 16), camvid.train.lr, camvid.train.warmup_steps) == (5800, 0.025, 300)
    assert (camvid.data["crop"], camvid.data["train_split"], camvid.data["test_split"]) == (479, "trainval", "test")
    assert camvid.hash != exp.run_config("rmi", 0, "full").hash
    # the medium configurations are untouched by the full ones (their committed results stay valid)
    assert "ignore_index" not in exp.run_config("ce", 0, "medium").loss


@pytest.mark.parametrize("arm", ["ce", "rmi"])
def test_rmi_full_runs_end_to_end_on_a_fake_voc(cache, monkeypatch, capsys, arm):
    from fakes import make_voc_sbd_folder

    make_voc_sbd_folder(cache / "voc")
    exp = experiments.get(4)
    shrink(monkeypatch, exp, {"data": {"root": str(cache / "voc"), "download": False, "crop": 32, "batch_size": 2,
                                       "workers": 0},
                              "train": {"epochs": 1, "batch_size": 2, "warmup_steps": 1, "eval_every": 1, "lr": 1e-3},
                              "eval": {"monitor_n": 1},
                              "model": {"weights_backbone": None}})
    record = run_full(cache, "4", arm, capsys)
    # train_aug = VOC train (2 images) + SBD train/val minus VOC val (2 more): 2 steps of 2 crops
    assert len(record["history"]) == 1 and len(record["history"][0]["step_loss"]) == 2
    assert "val_miou" in record["history"][0]
    m = record["metrics"]
    assert {"seg.miou", "seg.pixel_acc", "seg.iou.background", "seg.iou.tvmonitor"} <= set(m)
    assert 0.0 <= m["seg.miou"] <= 1.0 and 0.0 <= m["seg.pixel_acc"] <= 1.0
    assert record["config"]["model"]["name"] == "deeplabv3_resnet50" and record["scale"] == "full"


def test_rmi_full_on_a_fake_camvid(cache, monkeypatch):
    from fakes import make_camvid_folder

    make_camvid_folder(cache / "camvid")
    exp = experiments.get(4)
    small = {"data": {"root": str(cache / "camvid"), "download": False, "crop": 32, "batch_size": 2, "workers": 0},
             "train": {"epochs": 1, "batch_size": 2, "warmup_steps": 1, "lr": 1e-3},
             "model": {"weights_backbone": None},
             "eval": {"monitor_n": 1}}
    over = exp.full_overrides("camvid")
    over = {k: {**over.get(k, {}), **small.get(k, {})} for k in {*over, *small}}
    run = exp.run("bce", 0, "full", device="cpu", cache=False, **over)
    assert len(run.history.records[0]["step_loss"]) == 2  # train + val = 5 images, batch 2, drop_last
    assert {"seg.iou.unlabelled", "seg.iou.sky"} <= set(run.metrics)  # 12 classes: the official code's


def test_rmi_full_without_data_says_where_to_get_it(cache):
    exp = experiments.get(4)
    with pytest.raises(FileNotFoundError, match=r"VOCtrainval_11-May-2012\.tar.*benchmark\.tgz"):
        exp.run("ce", 0, "full", device="cpu", cache=False,
                data={"root": str(cache / "nothing"), "download": False}, model={"weights_backbone": None})


def test_deeplabv3_resnet50_builds_offline_at_both_output_strides():
    from torch import nn

    from pixelbook.models import deeplabv3_resnet50

    net = deeplabv3_resnet50(5, output_stride=16)
    assert net(torch.rand(2, 3, 33, 33)).shape == (2, 5, 33, 33)
    assert net.net.backbone.layer3[0].conv2.stride == (2, 2) and net.net.backbone.layer4[0].conv2.stride == (1, 1)
    frozen = deeplabv3_resnet50(4, output_stride=8, frozen_batchnorm=True).train()
    assert frozen.net.backbone.layer3[0].conv2.stride == (1, 1)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    frozen(torch.rand(1, 3, 32, 32)).sum().backward()  # batch 1 trains: no batch statistics anywhere
    with pytest.raises(ValueError, match="output_stride"):
        deeplabv3_resnet50(3, output_stride=32)
    with pytest.raises(ValueError, match="output stride 8"):
        deeplabv3_resnet50(3, output_stride=16, weights="COCO_WITH_VOC_LABELS_V1")


# ---------------------------------------------------------------------------------------------- Chapter 3


def test_std_full_config_is_the_papers_isic_protocol():
    exp = experiments.get(3)
    assert [a.name for a in exp.arms_for("full")] == ["softmax", "std"]  # the twins are read-outs of these two
    assert [a.name for a in exp.arms_for("medium")] == [a.name for a in exp.arms]
    cfg = exp.run_config("std", 0, "full")
    t, d, m = cfg.train, cfg.data, cfg.model
    # [STD, Sec. 4.3]: batch 16, 50K iterations, lr 1e-4, crop 513; ISIC: lambda 0.75, epsilon 0.1; 7x7, sigma 5
    assert (t.epochs * (1758 // t.batch_size), t.batch_size, t.lr) == (50031, 16, 1e-4)
    assert (d["dataset"], d["size"], d["val_fraction"], d["num_classes"]) == ("isic2018", 513, 0.2, 2)
    assert m["std"] == {"iterations": 10, "lam": 0.75, "epsilon": 0.1, "kernel_size": 7, "sigma": 5.0}
    assert (m["name"], m["weights"]) == ("deeplabv3_resnet50", "COCO_WITH_VOC_LABELS_V1")
    assert cfg.eval["star_iterations"] == 50
    assert "std" not in exp.run_config("softmax", 0, "full").model


def test_std_full_cli_refuses_the_twin_arms(cache, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli.main(["3", "--scale", "full", "--arm", "ss_std", "--results", str(cache / "r")])
    assert exc.value.code == 2 and "the std arm's results record that read-out" in capsys.readouterr().err


@pytest.mark.parametrize("arm", ["softmax", "std"])
def test_std_full_runs_end_to_end_on_a_fake_isic(cache, monkeypatch, capsys, arm):
    from fakes import make_isic_folder

    make_isic_folder(cache / "isic", n=8)  # 6 star-shaped lesions: 5 train, 1 held out
    exp = experiments.get(3)
    shrink(monkeypatch, exp, {"data": {"root": str(cache / "isic"), "download": False, "size": 32, "batch_size": 2,
                                       "workers": 0},
                              "train": {"epochs": 1, "batch_size": 2, "eval_every": 1, "lr": 1e-3},
                              "model": {"weights": None}, "eval": {"monitor_n": 1}})
    record = run_full(cache, "3", arm, capsys)
    assert len(record["history"][0]["step_loss"]) == 2 and "val_miou" in record["history"][0]
    m = record["metrics"]
    assert {"isic.miou", "isic.argmax.miou", "isic.std.miou", "isic.length_ratio", "isic.star_violations"} <= set(m)
    twin = {"softmax": {"isic.std_lam0.5.miou", "isic.std_lam1.25.miou"}, "std": {"isic.ss_std.miou",
                                                                                 "isic.ss_std_est.miou",
                                                                                 "isic.vp_std.miou"}}[arm]
    assert twin <= set(m)
    assert m["isic.miou"] == m["isic.argmax.miou" if arm == "softmax" else "isic.std.miou"]
    assert all(0.0 <= v <= 1.0 for k, v in m.items() if k.endswith(".miou"))


def test_std_full_without_data_says_where_to_get_it(cache):
    with pytest.raises(FileNotFoundError, match=r"ISIC2018_Task1-2_Training_Input\.zip"):
        experiments.get(3).run("softmax", 0, "full", device="cpu", cache=False, data={"download": False},
                               model={"weights": None})


@pytest.mark.parametrize("skip", [{"full": {"c": "no such arm"}}, {"full": {"a": "x", "b": "y"}},
                                  {"large": {"a": "x"}}])
def test_skip_arms_must_name_some_arms_of_a_scale(skip):
    from pixelbook.experiments import Arm, Experiment

    attrs = {"chapter": "99_toy", "arms": (Arm("a"), Arm("b")), "seeds": {"full": (0,)}}
    toy = type("Toy", (Experiment,), {**attrs, "skip_arms": {"full": {"b": "x"}}})()
    assert [a.name for a in toy.arms_for("full")] == ["a"]
    with pytest.raises(ValueError, match="skip_arms"):
        type("Toy", (Experiment,), {**attrs, "skip_arms": skip})()


# ---------------------------------------------------------------------------------------------- Chapter 6


def test_meanshift_full_config_is_the_thesis_voc_setting():
    exp = experiments.get(6)
    assert [a.name for a in exp.arms_for("full")] == ["gbms", "plain", "unequal_uniform", "bsds_boundary"]
    cfg = exp.run_config("gbms", 0, "full")
    t, d, m, loss = cfg.train, cfg.data, cfg.model, cfg.loss
    # [Kong thesis, §5.5.1]: VOC 2012 + SBD (train_aug) -> VOC val; batch 1, poly from 2.5e-4; D = 64, alpha = 0.5
    assert (d["dataset"], d["train_split"], d["test_split"], d["scales"], d["rotate"]) == (
        "voc_instances", "train_aug", "val", [0.5, 1.5], 10.0)
    assert (t.batch_size, t.lr, t.schedule, t.optimizer) == (1, 2.5e-4, "poly", "sgd")
    assert (m["dim"], m["output_stride"], m["frozen_batchnorm"]) == (64, 8, True)
    assert (loss["alpha"], loss["delta"], loss["num_iters"], loss["loss_at"]) == (0.5, 6.0, 3, "all")
    assert exp.run_config("unequal_uniform", 0, "full").loss["weighting"] == "uniform"


def test_instance_transform_keeps_image_and_masks_aligned():
    from pixelbook.data.instances import InstanceTransform

    inst = torch.zeros(12, 16, dtype=torch.long)
    inst[:, 8:] = 1
    image = torch.zeros(3, 12, 16)
    image[:, :, 8:] = 1.0  # the instance is the bright half
    t = InstanceTransform(crop=20, scales=(1.0, 1.0), rotate=0.0, generator=torch.Generator().manual_seed(1))
    for _ in range(5):
        out = t({"image": image, "instances": inst, "labels": inst * 7})
        bright = out["image"][0] > 0.5
        assert torch.equal(bright, out["instances"] == 1)  # same pixels after flip, pad and crop
        assert torch.equal(out["valid"], out["instances"] != 255) and bool((out["instances"] == 255).any())
        assert torch.equal(out["labels"][out["valid"]], 7 * out["instances"][out["valid"]])
    ev = InstanceTransform(train=False, size=8)({"image": image, "instances": inst, "labels": inst})
    assert ev["image"].shape == (3, 8, 8) and ev["instances"].shape == (8, 8)
    with pytest.raises(ValueError, match="size"):
        InstanceTransform(train=False)


@pytest.mark.parametrize("arm", ["gbms"])
def test_meanshift_full_runs_end_to_end_on_a_fake_voc(cache, monkeypatch, capsys, arm):
    from fakes import make_voc_sbd_instances_folder

    make_voc_sbd_instances_folder(cache / "voc")  # train_aug: 4 images (1 held out for the read-out); val: 1
    exp = experiments.get(6)
    shrink(monkeypatch, exp, {"data": {"root": str(cache / "voc"), "download": False, "crop": 32, "eval_size": 32,
                                       "n_readout": 1, "workers": 0},
                              "train": {"epochs": 1}, "model": {"weights_backbone": None},
                              "loss": {"num_samples": 16}, "eval": {"monitor_n": 1, "grad_images": 1}})
    record = run_full(cache, "6", arm, capsys)
    assert len(record["history"][0]["step_loss"]) == 3 and "val_ari" in record["history"][0]
    m = record["metrics"]
    assert {"group.ari", "group.ap50", "proposals.ar", "kmeans.ari", "grad.focus_gain"} <= set(m)
    assert -1.0 <= m["group.ari"] <= 1.0


def test_meanshift_full_without_data_says_where_to_get_it(cache):
    with pytest.raises(FileNotFoundError, match=r"VOCtrainval_11-May-2012\.tar.*VOCInstances"):
        experiments.get(6).run("plain", 0, "full", device="cpu", cache=False,
                               data={"root": str(cache / "none"), "download": False}, model={"weights_backbone": None})


def test_meanshift_bsds_full_config_is_the_thesis_boundary_setting():
    from pixelbook.experiments import meanshift as ms
    from pixelbook.multitask import BSDS_POSITIVE

    exp = experiments.get(6)
    cfg = exp.run_config("bsds_boundary", 0, "full")
    t, d, m, loss, ev = cfg.train, cfg.data, cfg.model, cfg.loss, cfg.eval
    # [Kong thesis, §5.5.1]: "300 train-val images to train ... evaluate on the remaining 200 test images";
    # scales 0.5-1.5, rotations of 10 degrees, crops divisible by 8; batch 1, poly from 2.5e-4, frozen BN
    assert (d["dataset"], d["train_splits"], d["test_split"], d["archive"]) == (
        "bsds500", ["train", "val"], "test", "bsds500_full")
    assert (d["scales"], d["rotate"], d["crop"] % 8, d["batch_size"]) == ([0.5, 1.5], 10.0, 0, 1)
    assert (t.batch_size, t.lr, t.schedule, t.optimizer) == (1, 2.5e-4, "poly", "sgd")
    # §5.5.2: a 3-D embedding (two groups), branches over ResBlock 2-5 of an output-stride-8 ResNet-50
    assert (m["name"], m["dim"], m["output_stride"], m["frozen_batchnorm"], m["weights_backbone"]) == (
        "boundary_embedding_resnet50", 3, 8, True, "IMAGENET1K_V1")
    # §5.3.2 alpha = 0.5, delta from 1/delta = (1 - alpha)/3; §5.3.1 instance weights; §5.5.2 no GBMS
    assert (loss["alpha"], loss["delta"], loss["weighting"], loss["num_iters"]) == (0.5, 6.0, "instance", 0)
    assert 0 < loss["embed_epochs"] < t.epochs  # an embedding stage, then the logistic fine-tuning
    # the BSDS benchmark's maxDist (0.0075 of the diagonal) and thresholds (99); Chapter 1's consensus rule
    assert (ev["max_dist"], ev["thresholds"], d["positive"]) == (0.0075, 99, BSDS_POSITIVE)
    assert set(ms.FULL_COST) == {"voc", "bsds500"} and ms.FULL_COST["bsds500"]["arms"] == 1
    assert ms.FULL_COST["bsds500"]["iterations"] == t.epochs * 300 // t.batch_size  # the estimate is of this config
    # full scale only, and never chosen below it
    assert [a.name for a in exp.arms_for("full")] == ["gbms", "plain", "unequal_uniform", "bsds_boundary"]
    for scale in ("smoke", "small", "medium"):
        assert "bsds_boundary" not in [a.name for a in exp.arms_for(scale)]
        with pytest.raises(ValueError, match="'full' scale only"):
            exp.run_config("bsds_boundary", 0, scale)
    assert cfg.hash != exp.run_config("plain", 0, "full").hash


def _agreeing_bsds_test_image(root):
    """Rewrite the fake BSDS500 test image's ground truth: 3 annotators, one boundary at column 8 (the
    fake's random columns disagree there, so no pixel would reach the consensus of half the annotators)."""
    import numpy as np
    import scipy.io

    seg = np.ones((12, 16), dtype=np.uint16)
    seg[:, 8:] = 2
    bnd = np.zeros((12, 16), dtype=np.uint8)
    bnd[:, 8] = 1
    cells = np.empty((1, 3), dtype=object)
    for a in range(3):
        cells[0, a] = {"Segmentation": seg, "Boundaries": bnd}
    scipy.io.savemat(root / "BSR" / "BSDS500" / "data" / "groundTruth" / "test" / "100007.mat", {"groundTruth": cells})


def test_meanshift_bsds_full_runs_end_to_end_on_a_fake_bsds500(cache, monkeypatch, capsys):
    from fakes import make_bsds_folder

    root = make_bsds_folder(cache / "bsds")  # train 2 + val 1 (portrait) images to train on, test 1
    _agreeing_bsds_test_image(root)
    exp = experiments.get(6)
    shrink(monkeypatch, exp, {"data": {"root": str(root), "download": False, "crop": 16, "workers": 0},
                              "train": {"epochs": 2, "eval_every": 1}, "model": {"weights_backbone": None},
                              "loss": {"num_samples": 32, "embed_epochs": 1}})
    record = run_full(cache, "6", "bsds_boundary", capsys)
    h = record["history"]
    # 3 training images of batch 1: the embedding stage (epoch 1), then the logistic fine-tuning (epoch 2)
    assert [len(r["step_loss"]) for r in h] == [3, 3]
    assert "embedding" in h[0] and "logistic" not in h[0] and "logistic" in h[1] and "embedding" not in h[1]
    assert "test_ods" in h[0] and "test_ods" in h[1]
    m = record["metrics"]
    assert {"boundary.ods", "boundary.ois", "boundary.ap"} <= set(m)
    assert all(0.0 <= m[f"boundary.{k}"] <= 1.0 for k in ("ods", "ois", "ap"))
    assert m["boundary.images"] == 1.0 and m["boundary.tolerance_px"] == pytest.approx(0.0075 * 20)  # 12 x 16
    assert record["config"]["model"]["name"] == "boundary_embedding_resnet50" and record["scale"] == "full"


def test_meanshift_bsds_two_stage_loss_trains_the_branches_then_the_fusion():
    from pixelbook.experiments.meanshift import _bsds_loss
    from pixelbook.models import BoundaryEmbeddingNet

    torch.manual_seed(0)
    net = BoundaryEmbeddingNet(3)
    groups = torch.zeros(1, 16, 16, dtype=torch.long)
    groups[:, :, 7:9] = 1
    groups[:, 0] = 255
    batch = {"image": torch.rand(1, 3, 16, 16), "instances": groups, "valid": groups != 255}
    loss_fn = _bsds_loss({"alpha": 0.5, "weighting": "instance", "num_samples": 64, "delta": 6.0, "num_iters": 0,
                          "eta": 1.0, "loss_at": "all", "gbms_on": "sampled", "embed_epochs": 2}, steps_per_epoch=1)
    for step in range(3):
        net.zero_grad()
        loss, logs = loss_fn(net, batch)
        loss.backward()
        fuse = float(net.fuse.weight.grad.abs().sum())
        branch = float(net.branches[0].weight.grad.abs().sum())
        if step < 2:  # embedding stage: every branch learns, the fusion layer gets a zero gradient
            assert set(logs) == {"embedding"} and fuse == 0.0 and branch > 0.0
        else:
            assert set(logs) == {"logistic"} and fuse > 0.0 and branch > 0.0
    assert int(net.step) == 3  # the schedule's counter is a buffer: saved with the weights


def test_meanshift_bsds_evaluation_scores_a_perfect_map_one_and_transposes_portraits():
    from torch import nn

    from pixelbook.experiments.meanshift import evaluate_boundaries

    class Oracle(nn.Module):  # logits +-10 from the ground truth it is handed
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))
            self.truth = None

        def forward(self, image):
            return {"boundary": (self.truth.float() * 20 - 10)[None, None] + self.w}

    land = torch.zeros(12, 16)
    land[:, 5] = 1.0
    land[3, :] = 0.4  # below the consensus: not a boundary
    samples = [{"image": torch.rand(3, 12, 16), "boundaries": land},
               {"image": torch.rand(3, 16, 12), "boundaries": land.T.contiguous()}]
    oracle = Oracle()

    class Test(list):
        def __getitem__(self, i):
            oracle.truth = list.__getitem__(self, i)["boundaries"] >= 0.5
            return list.__getitem__(self, i)

    ev = {"thresholds": 99, "max_dist": 0.0075}
    out = evaluate_boundaries(oracle, Test(samples), {"positive": 0.5}, ev)
    assert (out["boundary.ods"], out["boundary.ois"], out["boundary.images"]) == (1.0, 1.0, 2.0)
    assert out["boundary.ap"] > 0.99
    # with a consensus of 0.3 the 0.4 row is a boundary too, which the oracle (drawing >= 0.5) misses
    assert evaluate_boundaries(oracle, Test(samples), {"positive": 0.3}, ev)["boundary.ods"] < 0.9
    blind = Oracle()
    blind.forward = lambda image: {"boundary": torch.full((1, 1, *image.shape[-2:]), -10.0)}
    assert evaluate_boundaries(blind, samples, {"positive": 0.5}, ev)["boundary.ods"] == 0.0


def test_meanshift_bsds_full_without_data_says_where_to_get_it(cache):
    with pytest.raises(FileNotFoundError, match=r"full-scale data not available.*BSR_full\.tgz.*'root'"):
        experiments.get(6).run("bsds_boundary", 0, "full", device="cpu", cache=False,
                               data={"root": str(cache / "none"), "download": False}, model={"weights_backbone": None})


def test_std_full_evaluation_of_an_empty_shard_gives_zero_counts_under_every_name(cache, monkeypatch):
    """A process with no held-out image (more processes than images) still joins the same all-reduces."""
    from fakes import make_isic_folder

    import pixelbook.experiments._full as full

    make_isic_folder(cache / "isic", n=8)
    exp = experiments.get(3)
    over = {"data": {"root": str(cache / "isic"), "download": False, "size": 16, "workers": 0, "batch_size": 2},
            "model": {"weights": None}}
    cfg = exp.run_config("std", 0, "full", over)
    data, model, _ = exp._prepare(cfg)
    names = set(exp._evaluate_full(cfg, model, data["val"]))
    reduced = []
    monkeypatch.setattr(full, "all_reduce_sum", lambda t: reduced.append(t.clone()) or t + 1)  # the others' counts
    monkeypatch.setattr(full.distributed, "shard_slice", lambda n: slice(0, 0))
    out = exp._evaluate_full(cfg, model, data["val"])
    assert set(out) == names and len(reduced) == 1 + sum(k.endswith(".miou") for k in names)
    assert all(int(t.sum()) == 0 for t in reduced)


# ---------------------------------------------------------------------------------------------- Chapter 2


def test_levelset_full_config_is_the_papers_saliency_setup():
    from pixelbook.experiments.levelset import UNetDynamics
    from pixelbook.models import UNet, count_parameters

    exp = experiments.get(2)
    assert [a.name for a in exp.arms_for("full")] == ["contour_evolution", "unet_large"]
    assert [a.name for a in exp.arms_for("medium")] == [a.name for a in exp.arms]
    ce, unet = exp.run_config("contour_evolution", 0, "full"), exp.run_config("unet_large", 0, "full")
    # [NODE-LS, §4.4.2]: MSRA10K for training, PASCAL-S, ECSSD and HKU-IS for testing, 512 x 512
    assert (ce.data["dataset"], ce.data["size"], ce.data["n_train"]) == ("msra10k", 512, None)
    assert sorted(ce.data["test_sets"]) == ["ecssd", "hku_is", "pascal_s"]
    # [NODE-LS, §3.4]: RK45 (dopri5), rtol 0, atol in [1e-5, 1e-3], the adjoint; §4.3: Adam, lr in [1e-4, 1e-3]
    assert ce.model["train_solver"] == {"method": "dopri5", "rtol": 0.0, "atol": 1e-3, "adjoint": True}
    for cfg in (ce, unet):
        assert cfg.train.optimizer == "adam" and 1e-4 <= cfg.train.lr <= 1e-3 and cfg.train.warmup_steps > 0
    # Table 2: UNet 15M, NodeUNet 5M (ours within 15 %)
    assert abs(count_parameters(UNet(3, 1, width=unet.model["width"], depth=unet.model["depth"])) - 15e6) < 0.15 * 15e6
    dyn = UNetDynamics(1 + ce.model["embed_channels"], ce.model["dyn_width"], ce.model["dyn_depth"])
    assert abs(count_parameters(dyn) - 5e6) < 0.15 * 5e6
    assert ce.model["initial"]["width"] == unet.model["width"]  # the initial contour: the 15M UNet, stopped early
    assert ce.model["initial"]["epochs"] < unet.train.epochs


def _tiny_levelset(cache):
    from fakes import make_sod_folder

    make_sod_folder(cache / "sod", n=4)  # msra10k/, ecssd/, pascal_s/, hku_is/: 4 images each
    return tiny_levelset_overrides(cache / "sod")


def tiny_levelset_overrides(root):
    """Chapter 2's full configuration shrunk to seconds (also used by tests/levelset_full_tiny.py)."""
    return {"data": {"root": str(root), "download": False, "size": 16, "batch_size": 2, "workers": 0},
            "model": {"width": 4, "depth": 1, "embed_channels": 4, "hidden": 8, "dyn_width": 4, "dyn_depth": 1,
                      "initial": {"width": 4, "depth": 1, "epochs": 1, "lr": 1e-3, "batch_size": 2,
                                  "warmup_steps": 1}},
            "train": {"epochs": 1, "batch_size": 2, "warmup_steps": 1, "eval_every": 1},
            "eval": {"monitor_n": 2}}


@pytest.mark.parametrize("arm", ["contour_evolution", "unet_large"])
def test_levelset_full_runs_end_to_end_on_fake_saliency_sets(cache, monkeypatch, capsys, arm):
    exp = experiments.get(2)
    shrink(monkeypatch, exp, _tiny_levelset(cache))
    record = run_full(cache, "2", arm, capsys)
    assert len(record["history"]) == 1 and len(record["history"][0]["step_loss"]) == 2  # 4 images, batch 2
    assert "val_iou" in record["history"][0]
    m = record["metrics"]
    for name in ("ecssd", "pascal_s", "hku_is"):
        assert {f"{name}.iou", f"{name}.mean_iou", f"{name}.fbeta", f"{name}.mae"} <= set(m)
        assert all(0.0 <= m[f"{name}.{k}"] <= 1.0 for k in ("iou", "mean_iou", "fbeta", "mae"))
    if arm == "contour_evolution":
        assert {"ecssd.init.iou", "hku_is.init.fbeta"} <= set(m) and m["ecssd.nfe"] >= 6  # dopri5: >= one step
        assert m["params_with_initial"] > m["params"] > 0
    else:
        assert "ecssd.init.iou" not in m


def test_levelset_full_evaluation_equals_segmentation_scores_and_starts_at_the_initial_contour(cache):
    """The summed evaluation equals pixelbook.levelset.segmentation_scores on the whole set; an untrained
    Contour Evolution (zero last layers) returns its initial contour, up to dopri5's interpolation."""
    from pixelbook.experiments.levelset import _evaluate_full
    from pixelbook.levelset import segmentation_scores

    exp = experiments.get(2)
    cfg = exp.run_config("contour_evolution", 0, "full", _tiny_levelset(cache))
    data, model, _ = exp._prepare(cfg)
    out = _evaluate_full(cfg, model, data["test"])
    ds = data["test"]["ecssd"]
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    labels = torch.stack([ds[i]["labels"] for i in range(len(ds))])
    with torch.no_grad():
        phi0 = model.initial_contour(images)
    ref = segmentation_scores(phi0, labels, scale=3.0)
    assert out["ecssd.init.iou"] == pytest.approx(ref["pooled_iou"], abs=1e-12)
    assert out["ecssd.init.mean_iou"] == pytest.approx(ref["mean_iou"], abs=1e-12)
    assert out["ecssd.init.fbeta"] == pytest.approx(ref["fbeta"], abs=1e-12)
    assert out["ecssd.init.mae"] == pytest.approx(ref["mae"], rel=1e-5)
    assert out["ecssd.iou"] == pytest.approx(out["ecssd.init.iou"], abs=0.02)


def test_levelset_full_without_data_says_where_to_get_it(cache):
    with pytest.raises(FileNotFoundError, match=r"MSRA10K_Imgs_GT\.zip"):
        experiments.get(2).run("unet_large", 0, "full", device="cpu", cache=False,
                               data={"root": str(cache / "nothing"), "download": False})


@pytest.mark.ddp
@pytest.mark.slow
def test_levelset_full_under_torchrun_matches_one_process(tmp_path):
    """2 processes (gloo) train the same Contour Evolution (and its initial UNet) as one: GroupNorm only, so
    the step losses agree to float tolerance; the evaluation, summed over processes, gives the same metrics."""
    import os

    from fakes import make_sod_folder
    from test_distributed import _env, _finish, _torchrun

    make_sod_folder(tmp_path / "sod", n=4)
    env = _env(tmp_path / "cache2", LEVELSET_FULL_ROOT=str(tmp_path / "sod"))
    args = ["levelset_full_tiny:EXPERIMENT", "--scale", "full", "--arm", "contour_evolution", "--device", "cpu"]
    rc, out = _finish(_torchrun(2, ["-m", "pixelbook.run", *args, "--results", str(tmp_path / "two")], env))
    assert rc == 0, out[-3000:]
    saved = {k: os.environ.get(k) for k in ("LEVELSET_FULL_ROOT", "PIXELBOOK_CACHE", "PIXELBOOK_PROGRESS")}
    os.environ.update(LEVELSET_FULL_ROOT=str(tmp_path / "sod"), PIXELBOOK_CACHE=str(tmp_path / "cache1"),
                      PIXELBOOK_PROGRESS="0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_cli.main([*args, "--results", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    one, two = (json.loads(next((tmp_path / n).rglob("full-contour_evolution-seed0.json")).read_text())
                for n in ("one", "two"))
    assert two["provenance"]["world_size"] == 2
    a, b = ([v for r in rec["history"] for v in r["step_loss"]] for rec in (one, two))
    assert len(a) == len(b) == 2
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-4, atol=1e-6)
    assert two["metrics"].keys() == one["metrics"].keys()
    for k in one["metrics"]:
        assert two["metrics"][k] == pytest.approx(one["metrics"][k], rel=1e-3, abs=1e-3), k
