"""Chapter 5's experiment definition: declarations, configs at every scale, one smoke run per task."""

import math

import pytest
import torch

from pixelbook.experiments import gating as exp_mod
from pixelbook.experiments.gating import EXPERIMENT, STAGE_METRICS


def test_declarations_are_valid_and_configs_build_at_every_scale():
    EXPERIMENT.validate()
    assert len(EXPERIMENT.seeds_for("medium")) >= 3 and EXPERIMENT.claims
    for arm in EXPERIMENT.arms:
        for scale in EXPERIMENT.seeds:
            cfg = EXPERIMENT.run_config(arm.name, EXPERIMENT.seeds_for(scale)[0], scale)
            assert cfg.train is not None


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
