"""Chapter 5's experiment definition: declarations, configs at every scale, one smoke run per task."""

import dataclasses
import json
import math

import pytest
import torch

import fakes

from pixelbook import gating as pb_gating
from pixelbook.experiments import gating as exp_mod
from pixelbook.experiments.gating import EXPERIMENT, STAGE_METRICS


def test_declarations_are_valid_and_configs_build_at_every_scale():
    EXPERIMENT.validate()
    assert len(EXPERIMENT.seeds_for("medium")) >= 3 and EXPERIMENT.claims
    for scale in EXPERIMENT.seeds:
        for arm in EXPERIMENT.arms_for(scale):
            cfg = EXPERIMENT.run_config(arm.name, EXPERIMENT.seeds_for(scale)[0], scale)
            assert cfg.train is not None
    assert [a.name for a in EXPERIMENT.arms_for("full")] == list(exp_mod.FULL_ARMS)


def test_task_a_arms_with_four_kernels_have_equal_conv_parameters():
    sizes = {}
    for arm in EXPERIMENT.arms:
        if arm.params["task"] != "A":
            continue
        cfg = EXPERIMENT.run_config(arm.name, 0, "smoke")
        net = EXPERIMENT.model(cfg, None).net
        sizes[arm.name] = sum(p.numel() for p in net.pool.branches.convs.parameters())
    four = {k: v for k, v in sizes.items() if k != "a_tied_avg"}
    assert len(set(four.values())) == 1 and sizes["a_tied_avg"] * 4 == next(iter(four.values()))


# Output tolerance: float32 in another summation order. Task B's eight residual blocks were first
# checked at 1e-5 and one element of 2400 differed by 1.1e-5 (a rounding difference, not a layout bug):
# its tolerance is 1e-4, for outputs of order 1.
@pytest.mark.parametrize("arm, gated, atol", [
    ("a_untied_avg", None, 1e-5), ("a_true_depth", None, 1e-5), ("a_pag", None, 1e-5),
    ("b_pag", True, 1e-4), ("b_pag", False, 1e-4), ("b_skip", True, 1e-4), ("b_trunc5", False, 1e-4),
])
def test_models_are_channels_last_and_compute_what_the_contiguous_model_computes(arm, gated, atol):
    """``model.channels_last`` changes the weights' memory layout only: outputs (training and evaluation
    mode) and gradients match the NCHW model's."""
    cfg = EXPERIMENT.run_config(arm, 0, "small")
    assert cfg.model["channels_last"] is True
    torch.manual_seed(0)
    last = EXPERIMENT.model(cfg, None).net
    plain = EXPERIMENT.model(dataclasses.replace(cfg, model={**cfg.model, "channels_last": False}), None).net
    plain.load_state_dict(last.state_dict())
    conv = next(m for m in last.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    gen = torch.Generator().manual_seed(0)
    image, bins = torch.rand(2, 3, 20, 20, generator=gen), torch.randint(0, 4, (2, 20, 20), generator=gen)
    args = (image, bins) if arm == "a_true_depth" else (image,)
    outs = []
    for net in (last, plain):
        if gated is not None and net.gates != "none":
            exp_mod._set_gating(net, gated)
        for mode in (True, False):  # training (Gumbel samples) and evaluation (argmax)
            net.train(mode)
            torch.manual_seed(1)  # the same Gumbel noise in both layouts
            out = net(*args)["seg"]
            if mode:
                out.square().mean().backward()
            outs.append(out.detach())
        outs.append([p.grad.clone() for p in net.parameters() if p.grad is not None])
    torch.testing.assert_close(outs[0], outs[3], rtol=1e-4, atol=atol)
    torch.testing.assert_close(outs[1], outs[4], rtol=1e-4, atol=atol)
    assert len(outs[2]) == len(outs[5]) > 0
    for g_last, g_plain in zip(outs[2], outs[5]):
        torch.testing.assert_close(g_last.contiguous(), g_plain, rtol=1e-3, atol=1e-5)


def test_task_b_decays_the_learning_rate_once_per_stage():
    cfg = EXPERIMENT.run_config("b_pag", 0, "medium")
    assert cfg.train.schedule == ("cosine", *(st[2] for st in cfg.loss["stages"]))
    trunc = EXPERIMENT.run_config("b_trunc5", 0, "medium")
    assert trunc.train.schedule == ("cosine", trunc.train.epochs)  # one stage: one decay


def test_truncated_arms_match_the_curriculum_in_steps():
    pag = EXPERIMENT.run_config("b_pag", 0, "medium")
    for name in ("b_trunc5", "b_trunc6", "b_trunc7", "b_dense"):
        assert EXPERIMENT.run_config(name, 0, "medium").train.epochs == pag.train.epochs


def test_stage_bounds_and_locate():
    bounds = exp_mod._stage_bounds([["x", None, 2], ["y", 0.5, 1]], steps_per_epoch=3)
    assert bounds == [(0, 6), (6, 9)]
    assert exp_mod._locate(bounds, 0) == (0, 0, 6)
    assert exp_mod._locate(bounds, 6) == (1, 0, 3)
    assert exp_mod._locate(bounds, 8) == (1, 2, 3)
    assert exp_mod._locate(bounds, 20) == (1, 3, 3)


@pytest.mark.parametrize("arm", ["a_pag", "b_pag"])
def test_smoke_run_reports_every_metric(arm):
    run = EXPERIMENT.run(arm, 0, "smoke", "cpu", cache=False, progress=False)
    if arm == "a_pag":
        assert {"a.miou", "a.acc", "a.gflops", "a.copy_share"} <= set(run.metrics)
        assert int(run.model.step) == 2 and run.model.net.pool.gumbel.tau == pytest.approx(0.1)  # annealed 1 -> 0.1
    else:
        for key in ("b100", "b90", "b70", "b50"):
            assert all(f"{key}.{m}" in run.metrics for m in ("miou", "acc", "flops", "gflops"))
        assert all(f"b50.{m}" in run.metrics for m in STAGE_METRICS)
        assert int(run.model.step) == run.config.train.epochs * math.ceil(16 / 16)
        assert not bool(torch.isnan(run.model.stage_metrics[:, 0]).any())
        # the dense stage's cost, counted again at the end (it does not depend on the weights), is the stage's
        assert run.metrics["b100.flops"] == float(run.model.stage_metrics[0, STAGE_METRICS.index("flops")])
        assert run.metrics["b100.gflops"] == float(run.model.stage_metrics[0, STAGE_METRICS.index("gflops")])


def test_staged_task_b_arms_share_their_dense_stage_and_equal_the_runs_trained_whole(tmp_path, monkeypatch):
    """b_pag_total and b_skip started from the dense stage b_pag kept (``record_run``'s shared prefix)
    give, bit for bit, the runs trained whole: the dense stage reads neither the KL's mode nor the
    gates' granularity, and draws no random numbers that the later stages would miss."""
    from pixelbook import results
    from pixelbook.experiments import record_run

    for scale, epochs in (("smoke", 1), ("medium", 6)):
        keys = [EXPERIMENT.shared_prefix(EXPERIMENT.run_config(a, 0, scale))
                for a in ("b_pag", "b_pag_total", "b_skip")]
        assert keys[0] == keys[1] == keys[2] and keys[0][1] == epochs
    assert all(EXPERIMENT.shared_prefix(EXPERIMENT.run_config(a, 0, "medium")) is None
               for a in ("b_dense", "b_trunc5", "a_pag"))
    for clean in (True, False):  # a dirty checkout keeps and shares nothing: the runs are trained whole
        monkeypatch.setattr(results, "git_state", lambda path=None, c=clean: {"commit": "c0ffee", "dirty": not c})
        for arm in ("b_pag", "b_pag_total", "b_skip"):
            record_run(EXPERIMENT, arm, 0, "smoke", device="cpu", root=tmp_path / str(clean), progress=False)
    for arm in ("b_pag_total", "b_skip"):
        shared, whole = (results.read_result(tmp_path / str(c) / EXPERIMENT.chapter / f"smoke-{arm}-seed0.json")
                         for c in (True, False))
        assert shared["provenance"]["shared_prefix"] == {"arm": "b_pag", "epochs": 1}
        assert whole["provenance"]["shared_prefix"] is None
        assert shared["metrics"] == whole["metrics"]
        strip = [[{k: v for k, v in r.items() if k != "time"} for r in rec["history"]] for rec in (shared, whole)]
        assert strip[0] == strip[1]
    # the dense stage's cost is each arm's own: per-image gates cost less than per-pixel ones
    flops = {arm: results.read_result(tmp_path / "True" / EXPERIMENT.chapter / f"smoke-{arm}-seed0.json")["metrics"]
             ["b100.flops"] for arm in ("b_pag", "b_pag_total", "b_skip")}
    assert flops["b_skip"] < flops["b_pag"] == flops["b_pag_total"]


@pytest.mark.parametrize("arm", ["a_pag", "a_true_depth"])
def test_task_a_monitor_records_the_held_out_miou_every_epoch(arm):
    """One ``val_a.miou`` per epoch; the last is the run's ``a.miou`` (same scenes, same predictions)."""
    run = EXPERIMENT.run(arm, 0, "smoke", "cpu", cache=False, progress=False, train={"epochs": 3})
    curve = run.history["val_a.miou"]
    assert len(curve) == len(run.history.records) == 3
    assert all(0.0 <= v <= 1.0 for v in curve)
    assert curve[-1] == run.metrics["a.miou"]
    # it draws no random numbers (training after it is what it would be without it) and leaves the
    # network in the mode it found it in
    monitor = EXPERIMENT.monitor(run.config, run.data)
    run.model.train()
    rng = torch.get_rng_state()
    got = monitor(run.model)
    assert torch.equal(torch.get_rng_state(), rng) and run.model.net.training
    assert got == {"val_a.miou": curve[-1]}
    # it scores the whole held-out set: a wrong prediction on the last scene lowers it
    val = run.data["val"]
    worse = {**val, "labels": val["labels"].clone()}
    worse["labels"][-1] = (exp_mod._predict(run.model.net, val["image"][-1:], **(
        {"depth_bins": val["depth_bins"][-1:]} if arm == "a_true_depth" else {}))[0] + 1) % 3
    assert exp_mod._val_miou_a(run.model.net, worse) < curve[-1]


def test_task_b_monitor_records_the_held_out_miou_every_epoch_in_the_stage_mode():
    """One ``val_b.miou`` per epoch, in the mode of the stage being trained; at a stage's end it is the
    stage's ``miou``. It draws no random numbers and leaves the network's mode and gating as it found them."""
    run = EXPERIMENT.run("b_pag", 0, "smoke", "cpu", cache=False, progress=False)
    stages = run.config.loss["stages"]
    curve = run.history["val_b.miou"]
    assert len(curve) == len(run.history.records) == sum(st[2] for st in stages) == 4
    for (key, _, _), value in zip(stages, curve):  # smoke: one epoch per stage
        assert value == run.metrics[f"{key}.miou"] == run.history[f"val_{key}.miou"][-1]
    run.model.train()
    forced = [b.force for b in pb_gating.pag_blocks(run.model.net)]
    rng = torch.get_rng_state()
    assert exp_mod._val_miou_b(run.model.net, run.data["val"]) == curve[-1]
    assert torch.equal(torch.get_rng_state(), rng) and run.model.net.training
    assert [b.force for b in pb_gating.pag_blocks(run.model.net)] == forced
    # at the last stage's end (where training stopped) the monitor gives both values
    got = EXPERIMENT.monitor(run.config, run.data)(run.model)
    assert got == {"val_b.miou": curve[-1], "val_b50.miou": curve[-1]}


def test_committed_task_b_runs_record_their_held_out_curve():
    """Every committed Task-B ``medium`` run has a held-out mIoU per epoch, which at each stage's last
    epoch is that stage's ``miou`` (the curve the convergence check of section 16 reads)."""
    from pixelbook import results

    res = results.load_results(EXPERIMENT.chapter, "medium")
    for arm in (a.name for a in EXPERIMENT.arms if a.params["task"] == "B"):
        for seed in EXPERIMENT.seeds_for("medium"):
            cfg = EXPERIMENT.run_config(arm, seed, "medium")
            curve = res.history(arm, seed)[exp_mod.CONVERGENCE_B["metric"]]
            assert len(curve) == cfg.train.epochs, (arm, seed)
            end = 0
            for key, _, epochs in cfg.loss["stages"]:
                end += epochs
                assert curve[end - 1] == pytest.approx(res.record(arm, seed)["metrics"][f"{key}.miou"], abs=1e-12)


def test_convergence_ranges_read_each_stage_s_last_epochs():
    from types import SimpleNamespace

    hist = {"b_pag": [0.1, 0.5, 0.6, 0.9, 0.2, 0.8, 0.85], "a_pag": [0.1, 0.2, 0.9, 0.5, 0.7, 0.71, 0.75, 0.74]}
    stages = {"b_pag": [["b100", None, 5], ["b50", 0.5, 2]], "a_pag": None}
    res = SimpleNamespace(
        history=lambda a, s: {("val_a.miou" if a[0] == "a" else "val_b.miou"): hist[a]},
        record=lambda a, s: {"config": {"loss": {"stages": stages[a]} if stages[a] else {"depth_weight": 0.0}}})
    # Task B: the last 3 epochs of the 5-epoch stage; all of the 2-epoch stage
    assert exp_mod.convergence_ranges(res, "b_pag", 0) == pytest.approx({"b100": 0.9 - 0.2, "b50": 0.05})
    # Task A: one stage, its last 5 epochs
    assert exp_mod.convergence_ranges(res, "a_pag", 0) == pytest.approx({"a": 0.75 - 0.5})
    # the curves they are read from, stage by stage
    assert exp_mod.stage_curves(res, "b_pag", 0) == {"b100": hist["b_pag"][:5], "b50": hist["b_pag"][5:]}
    assert exp_mod.stage_curves(res, "a_pag", 0) == {"a": hist["a_pag"]}
    stages["b_pag"] = [["b100", None, 5], ["b50", 0.5, 3]]
    with pytest.raises(ValueError, match="7 values of 'val_b.miou' for 8 epochs"):
        exp_mod.convergence_ranges(res, "b_pag", 0)
    for fn in (exp_mod.convergence_ranges, exp_mod.stage_curves):
        with pytest.raises(ValueError, match="`arm`"):
            fn(res, "c_pag", 0)


def test_committed_task_a_runs_record_their_held_out_curve():
    """Every committed Task-A ``medium`` run has a held-out mIoU per epoch, ending at its ``a.miou``."""
    from pixelbook import results

    res = results.load_results(EXPERIMENT.chapter, "medium")
    arms = [a.name for a in EXPERIMENT.arms if a.params["task"] == "A"]
    for arm in arms:
        for seed in EXPERIMENT.seeds_for("medium"):
            curve = res.history(arm, seed)[exp_mod.CONVERGENCE_A["metric"]]
            assert len(curve) == EXPERIMENT.run_config(arm, seed, "medium").train.epochs, (arm, seed)
            assert curve[-1] == pytest.approx(res.record(arm, seed)["metrics"]["a.miou"], abs=1e-12), (arm, seed)



# ---------------------------------------------------------------------------------------------- full scale


class TestFullScale:
    """``--scale full``: the thesis' Ch. 4 set-up (ResNet-50 + PAG on NYUv2), run end to end on fake files."""

    def test_configs_are_the_thesis_setup(self):
        for name in exp_mod.FULL_ARMS:
            cfg = EXPERIMENT.run_config(name, 0, "full")
            t, d, m = cfg.train, cfg.data, cfg.model
            assert (t.batch_size, t.lr, t.optimizer, t.schedule, t.weight_decay) == (1, 2e-4, "sgd", "poly", 5e-4)
            assert d["dataset"] == "nyuv2" and d["crop"]["nyuv2"] == [440, 600] and d["flip"]
            assert all(v % 8 == 0 for crop in d["crop"].values() for v in crop)  # "divisible by 8"
            assert m["weights"] == "IMAGENET1K_V1" and m["freeze_bn"] and m["pool_dilations"] == [0, 1, 2, 4, 6, 8, 10]
            assert t.epochs == sum(st[2] for st in cfg.loss["stages"])
        pag, trunc = EXPERIMENT.run_config("b_pag", 0, "full"), EXPERIMENT.run_config("b_trunc5", 0, "full")
        assert [st[:2] for st in pag.loss["stages"]] == [["b100", None], ["b90", 0.9], ["b70", 0.7], ["b50", 0.5]]
        assert trunc.train.epochs == pag.train.epochs and trunc.model["blocks"] == 14 and pag.model["blocks"] == 16
        assert EXPERIMENT.run_config("a_dil1", 0, "full").model["pool"] == "none"

    def test_imagenet_weights_are_fetched_with_the_data(self, tmp_path, monkeypatch):
        """Under torchrun ``data`` runs on rank 0 first: the weights' download belongs there, not in ``model``."""
        from torchvision.models import WeightsEnum, get_weight

        assert get_weight("ResNet50_Weights.IMAGENET1K_V1").url.endswith(".pth")
        fetched = []
        monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: fetched.append(self.name))
        fakes.make_nyu_folder(tmp_path)
        cfg = EXPERIMENT.run_config("a_pag", 0, "full", {"data": {"root": str(tmp_path), "download": False}})
        EXPERIMENT.data(cfg)
        assert fetched == ["IMAGENET1K_V1"]

        def offline(self, *args, **kwargs):
            import urllib.error

            raise urllib.error.URLError("no network in this test")

        monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
        with pytest.raises(FileNotFoundError, match=r"ImageNet ResNet-50 \(IMAGENET1K_V1\), which could not be"):
            EXPERIMENT.data(cfg)

    @pytest.mark.parametrize("arm", ["a_dil8", "a_true_depth", "b_dense", "b_trunc7"])
    def test_arms_without_a_full_counterpart_are_refused(self, arm):
        with pytest.raises(ValueError, match=f"{arm!r} has no 'full' configuration"):
            EXPERIMENT.run_config(arm, 0, "full")

    def test_cli_refuses_an_arm_without_full_configuration(self, capsys):
        from pixelbook import run

        with pytest.raises(SystemExit) as exc:
            run.main(["05_attentional_gating", "--scale", "full", "--arm", "a_dil8", "--list"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "--arm: 05_attentional_gating does not run 'a_dil8' at scale full" in err

    def test_truncations_are_the_nearest_to_the_thesis_consumption(self):
        from pixelbook.gating import PAGResNet50, count_flops

        x = torch.rand(1, 3, 88, 120)  # 440 x 600 / 5: every feature map scales by exactly 1/25
        ref = count_flops(PAGResNet50(40, gates="none", pool="none"), x).total
        frac = {}
        for b in (13, 14, 15, 16):
            net = PAGResNet50(40, gates="none", pool="pag", blocks=b)
            net.pool.force = 1  # every pixel on one 3x3 branch (the realised cost depends on the trained gate)
            frac[b] = count_flops(net, x).total / ref
        assert frac[16] == pytest.approx(1.0, abs=0.01)  # + the MultiPool's gate head
        nearest = {rho: min(frac, key=lambda b: abs(frac[b] - share)) for rho, share in
                   ((0.5, 0.6769), (0.7, 0.8620), (0.9, 0.9336))}  # [KONG, Table 4.2] consumption
        assert nearest[0.5] == exp_mod.FULL_TRUNCATION["b_trunc5"] == 14
        assert nearest[0.7] == exp_mod.FULL_TRUNCATION["b_trunc6"] == 15
        assert nearest[0.9] == nearest[0.7]  # hence no b_trunc7 at full scale

    def test_crops_depend_on_seed_step_and_image_only(self, tmp_path):
        fakes.make_nyu_folder(tmp_path)
        cfg = _tiny_full(EXPERIMENT.run_config("a_pag", 0, "full"), tmp_path)
        data = EXPERIMENT.data(cfg)
        assert len(data["train"]["index"]) == 2 and len(data["val"]["index"]) == 1 and len(data["classes"]) == 40
        one = exp_mod._crops(data, torch.tensor([0, 1]), [16, 16], True, 0, 5)
        alone = exp_mod._crops(data, torch.tensor([1]), [16, 16], True, 0, 5)  # another process's share
        assert one[0].shape == (2, 3, 16, 16) and one[1].shape == (2, 16, 16) and one[1].dtype == torch.int64
        assert torch.equal(one[0][1:], alone[0]) and torch.equal(one[1][1:], alone[1])
        later = [exp_mod._crops(data, torch.tensor([0]), [16, 16], True, 0, t)[0] for t in range(6)]
        assert any(not torch.equal(later[0], x) for x in later[1:])  # offsets/flips change with the step
        with pytest.raises(ValueError, match=r"`data\['crop'\]`: a 17x16 crop does not fit"):
            exp_mod._crops(data, torch.tensor([0]), [17, 16], True, 0, 0)

    def test_missing_data_is_a_clear_error(self, tmp_path, monkeypatch):
        cfg = EXPERIMENT.run_config("b_pag", 0, "full", {"data": {"root": str(tmp_path), "download": False}})
        with pytest.raises(FileNotFoundError, match="Chapter 5 at full scale trains on nyuv2.*missing"):
            EXPERIMENT.data(cfg)
        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))  # empty: the default config downloads NYUv2
        import urllib.error

        from pixelbook.data import registry

        def offline(request, timeout):
            raise urllib.error.URLError("no network in this test")

        monkeypatch.setattr(registry, "_urlopen", offline)
        with pytest.raises(FileNotFoundError, match="cannot reach .*Get NYU Depth v2's labeled set"):
            EXPERIMENT.data(EXPERIMENT.run_config("b_pag", 0, "full"))
        cfg = EXPERIMENT.run_config("b_pag", 0, "full", {"data": {"dataset": "cityscapes"}})
        with pytest.raises(FileNotFoundError, match="cityscapes, which is not in the dataset registry's cache.*"
                                                    "leftImg8bit_trainvaltest.zip"):
            EXPERIMENT.data(cfg)

    def test_cityscapes_through_the_same_definition(self, tmp_path):
        from test_data_cityscapes import _write_split

        _write_split(tmp_path, "train")
        _write_split(tmp_path, "val")
        cfg = EXPERIMENT.run_config("a_pag", 0, "full", {"data": {"dataset": "cityscapes", "root": str(tmp_path)},
                                                         "model": {"weights": None}})
        data = EXPERIMENT.data(cfg)
        assert len(data["classes"]) == 19 and data["label_key"] == "labels"
        images, labels = exp_mod._crops(data, data["train"]["index"], [8, 8], True, 0, 0)
        assert images.shape == (2, 3, 8, 8) and set(labels.unique().tolist()) <= {0, 13, 255}

    def test_end_to_end_from_the_command_line(self, tmp_path, monkeypatch):
        """data -> ResNet-50 + MultiPool -> loss -> fit -> evaluation -> results file, on the fake NYUv2 files."""
        from pixelbook import run

        fakes.make_nyu_folder(tmp_path)
        original = type(EXPERIMENT).config
        monkeypatch.setattr(EXPERIMENT, "config", lambda arm, seed, scale: _tiny_full(
            original(EXPERIMENT, arm, seed, scale), tmp_path))
        monkeypatch.setenv("PIXELBOOK_PROGRESS", "0")
        root = tmp_path / "results"
        assert run.main(["05_attentional_gating", "--scale", "full", "--arm", "a_pag", "--results", str(root)]) == 0
        record = json.loads((root / "05_attentional_gating" / "full-a_pag-seed0.json").read_text())
        assert record["scale"] == "full" and record["config"]["model"]["pool"] == "pag"
        assert len(record["history"]) == 1 and len(record["history"][0]["step_loss"]) == 2  # 2 images, batch 1
        assert record["provenance"]["world_size"] == 1 and not record["provenance"]["resumed"]
        m = record["metrics"]
        assert 0 <= m["a.miou"] <= 1 and 0 <= m["a.acc"] <= 1 and m["a.gflops"] > 0 and 0 < m["a.flops"] < 1.1
        assert "a.density_mean" not in m  # no PAG blocks in this arm

    def test_the_curriculum_evaluates_every_stage(self, tmp_path):
        fakes.make_nyu_folder(tmp_path)
        overrides = _tiny_overrides(EXPERIMENT.run_config("b_pag", 0, "full"), tmp_path)
        run = EXPERIMENT.run("b_pag", 0, "full", "cpu", cache=False, progress=False, **overrides)
        assert int(run.model.step) == 8 and len(run.history) == 4  # two steps of batch 1 per stage
        m = run.metrics
        for key in ("b100", "b90", "b70", "b50"):
            assert 0 <= m[f"{key}.miou"] <= 1 and m[f"{key}.gflops"] > 0
        for key, rho in (("b90", 0.9), ("b70", 0.7), ("b50", 0.5)):
            assert 0 <= m[f"{key}.density_mean"] <= 1 and f"{key}.ponder_ratio" in m
            assert m[f"{key}.density_maxdev"] >= abs(m[f"{key}.density_mean"] - rho) - 1e-9
        assert "b100.density_mean" not in m  # the dense stage forces every gate on
        blocks = pb_gating.pag_blocks(run.model.net)
        assert len(blocks) == 15 and all(b.gumbel.tau == pytest.approx(0.1) for b in blocks)  # annealed in b50
        assert run.model.net.pool.gumbel.tau == pytest.approx(0.1)  # the MultiPool: over the whole run
        frozen = [m for n, m in run.model.net.named_modules() if n in run.model.net._frozen]
        assert frozen and not any(m.training for m in frozen)  # ImageNet moments stay (thesis: batch 1)


def _tiny_overrides(cfg, root):
    """Changes that shrink a full-scale run to seconds on a CPU: the fake files, 16 x 16 crops, one epoch
    per stage, no ImageNet download, three MultiPool branches; the network is still a ResNet-50."""
    stages = [[key, rho, 1] for key, rho, _ in cfg.loss["stages"]]
    return {"data": {"root": str(root), "download": False, "crop": {"nyuv2": [16, 16], "cityscapes": [8, 8]},
                     "n_train": 2, "n_val": 1},
            "model": {"weights": None, "head_width": 8, "pool_dilations": [0, 1, 2]},
            "loss": {"stages": stages}, "train": {"epochs": len(stages)}, "eval": {"flops_images": 1}}


def _tiny_full(cfg, root):
    """``cfg`` with :func:`_tiny_overrides` applied (for the command line, which takes no overrides)."""
    o = _tiny_overrides(cfg, root)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **o.pop("train")),
                               **{k: {**getattr(cfg, k), **v} for k, v in o.items()})


@pytest.mark.ddp
@pytest.mark.slow
def test_full_scale_under_torchrun_matches_one_process(tmp_path):
    """``torchrun --nproc-per-node=2`` runs the full configuration (batch 1: the second process trains on a
    stand-in sample with weight 0) and records the same step losses and metrics as one process; also the
    curriculum, whose dense stage forces the PAG gates on (their parameters must still join each step)."""
    from test_distributed import _env, _finish, _torchrun

    from pixelbook import run

    fakes.make_nyu_folder(tmp_path)
    env = _env(tmp_path / "cache", GATING_FULL_ROOT=str(tmp_path))
    args = ["gating_full_tiny:EXPERIMENT", "--scale", "full", "--arm", "a_pag", "b_pag", "--device", "cpu"]
    rc, out = _finish(_torchrun(2, ["-m", "pixelbook.run", *args, "--results", str(tmp_path / "two")], env))
    assert rc == 0, out[-3000:]
    for arm in ("a_pag", "b_pag"):
        two = json.loads((tmp_path / "two" / "05_attentional_gating" / f"full-{arm}-seed0.json").read_text())
        assert two["provenance"]["world_size"] == 2
    import os

    saved = {k: os.environ.get(k) for k in ("GATING_FULL_ROOT", "PIXELBOOK_CACHE", "PIXELBOOK_PROGRESS")}
    os.environ.update(GATING_FULL_ROOT=str(tmp_path), PIXELBOOK_CACHE=str(tmp_path / "cache1"), PIXELBOOK_PROGRESS="0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process (OMP_NUM_THREADS=1): the same reductions
    try:
        assert run.main([*args, "--results", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    for arm, steps in (("a_pag", 2), ("b_pag", 8)):
        one, two = (json.loads((tmp_path / n / "05_attentional_gating" / f"full-{arm}-seed0.json").read_text())
                    for n in ("one", "two"))
        a = [v for r in one["history"] for v in r["step_loss"]]
        b = [v for r in two["history"] for v in r["step_loss"]]
        assert len(a) == len(b) == steps
        torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-4, atol=1e-6)
        assert two["metrics"].keys() == one["metrics"].keys()
        for k in one["metrics"]:
            assert two["metrics"][k] == pytest.approx(one["metrics"][k], rel=1e-3, abs=1e-3), (arm, k)
