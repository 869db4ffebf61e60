"""Chapter 6's experiment definition: declarations, configs, one smoke run, the within-arm claims."""

import math

import pytest

from pixelbook.experiments.meanshift import EXPERIMENT, SIZE_BINS, WITHIN_ARM_CLAIMS, WithinArmClaim
from pixelbook.results import Results


def test_declarations_are_valid_and_configs_build_at_every_scale():
    EXPERIMENT.validate()
    assert len(EXPERIMENT.seeds_for("medium")) >= 3 and EXPERIMENT.claims
    arms = {a.name for a in EXPERIMENT.arms}
    for claim in WITHIN_ARM_CLAIMS:
        assert claim.arm in arms and claim.n == len(EXPERIMENT.seeds_for("medium"))
    for scale in EXPERIMENT.seeds:
        for arm in EXPERIMENT.arms_for(scale):
            cfg = EXPERIMENT.run_config(arm.name, EXPERIMENT.seeds_for(scale)[0], scale)
            # full: the thesis' D, 64 on VOC and 3 for the two groups of BSDS500 (Sec. 5.5.2-5.5.3)
            want = (3 if arm.name == "bsds_boundary" else 64) if scale == "full" else 8
            assert cfg.train is not None and cfg.model["dim"] == want


def test_arms_share_the_network_and_the_budget():
    cfgs = [EXPERIMENT.run_config(a.name, 0, "medium") for a in EXPERIMENT.arms_for("medium")]
    assert len({str(dict(c.model)) for c in cfgs}) == 1
    assert len({(c.train.epochs, c.train.batch_size, c.train.lr) for c in cfgs}) == 1
    assert len({c.data["n_train"] for c in cfgs}) == 1


def test_smoke_run_reports_every_metric():
    run = EXPERIMENT.run("gbms", 0, "smoke", "cpu", cache=False, progress=False)
    for prefix in ("group", "direct", "kmeans"):
        for name in ("ari", "covering", "count_exact", "count_error") + tuple(f"iou_{b[0]}" for b in SIZE_BINS):
            assert f"{prefix}.{name}" in run.metrics
    for key in ("group.ap50", "group.delta", "group.iters", "proposals.ar", "proposals.ar50", "grad.focus_gain"):
        assert key in run.metrics and not math.isnan(run.metrics[key])
    assert run.metrics["group.delta"] in (6.0, 12.0, 24.0) and run.metrics["group.iters"] in (3.0, 10.0)
    assert "val_ari" in run.history.last


def test_within_arm_claim():
    recs = [{"arm": "gbms", "seed": s, "metrics": {"grad.focus_gain": v}} for s, v in ((0, 1.3), (1, 1.05), (2, 1.2))]
    res = Results("06_mean_shift_grouping", "medium", recs)
    claim = WithinArmClaim("x", "y", arm="gbms", metric="grad.focus_gain", threshold=1.1, k=2)
    out = claim.evaluate(res)
    assert out.wins == 2 and out.holds and "holds" in str(out)
    out.check()
    strict = WithinArmClaim("x", "y", arm="gbms", metric="grad.focus_gain", threshold=1.1, k=3)
    with pytest.raises(AssertionError, match="expected to hold"):
        strict.evaluate(res).check()


def test_claims_hash_covers_the_within_arm_claims():
    import dataclasses

    from pixelbook.experiments.meanshift import MeanShiftExperiment
    from pixelbook.results import claims_hash

    h = EXPERIMENT.claims_hash()
    assert h != claims_hash(EXPERIMENT.claims)  # the within-arm claims are part of it
    (c,) = WITHIN_ARM_CLAIMS
    for change in ({"threshold": 1.2}, {"k": 2}, {"metric": "grad.boundary_ratio_loop"}, {"arm": "plain"}):
        other = type("Other", (MeanShiftExperiment,), {"within_arm_claims": (dataclasses.replace(c, **change),)})()
        assert other.claims_hash() != h, change
    for change in ({"expected": not c.expected}, {"statement": "s"}, {"paper": "p"}):  # not what decides the outcome
        same = type("Same", (MeanShiftExperiment,), {"within_arm_claims": (dataclasses.replace(c, **change),)})()
        assert same.claims_hash() == h, change
    # without within-arm claims the hash is that of `claims` alone (what other chapters recorded)
    none = type("NoWithin", (MeanShiftExperiment,), {"within_arm_claims": ()})()
    assert none.claims_hash() == claims_hash(EXPERIMENT.claims)
    with pytest.raises(ValueError, match="within-arm claim 'gradient_focus_on_boundaries' names arm"):
        type("Bad", (MeanShiftExperiment,), {"within_arm_claims": (dataclasses.replace(c, arm="nope"),)})()
