"""Chapter 9's experiment definition: declarations, equal budgets, the read-outs, one smoke run."""

import pytest
import torch

from pixelbook.experiments.cas import EXPERIMENT, border_readout, readout_scores


def test_declarations_are_valid_and_configs_build_at_every_synthetic_scale():
    EXPERIMENT.validate()
    assert len(EXPERIMENT.seeds_for("medium")) >= 3 and EXPERIMENT.claims
    for arm in EXPERIMENT.arms:
        for scale in ("smoke", "small", "medium"):
            cfg = EXPERIMENT.run_config(arm.name, EXPERIMENT.seeds_for(scale)[0], scale)
            assert cfg.train is not None and cfg.train.seed == cfg.seed


def test_arms_of_one_network_have_the_same_budget_and_data():
    med = [EXPERIMENT.run_config(a.name, 0, "medium") for a in EXPERIMENT.arms]
    for net in ("fcn", "resnet"):
        cfgs = [c for c, a in zip(med, EXPERIMENT.arms) if a.params["net"] == net]
        assert len({(c.train.epochs, c.train.lr, c.train.batch_size, c.data["n_train"]) for c in cfgs}) == 1
    sod = {str(sorted(c.data.items())) for c, a in zip(med, EXPERIMENT.arms) if a.params["scenes"] == "sod"}
    assert len(sod) == 1  # one draw of scenes per seed, shared by the eight arms that compare losses


def test_every_claim_compares_arms_with_the_same_scenes():
    scenes = {a.name: a.params["scenes"] for a in EXPERIMENT.arms}
    for c in EXPERIMENT.claims:
        assert scenes[c.arm_a] == scenes[c.arm_b], c.id


def _two_region_probs(flip):
    """Object (rows/cols 2..3 of 6x6) on channel 1, or on channel 0 in the images where `flip`."""
    p = torch.zeros(len(flip), 2, 6, 6, dtype=torch.float64)
    p[:, 1, 2:4, 2:4] = 0.9
    p[:, 0] = 1 - p[:, 1]
    p[flip] = p[flip].flip(1)
    return p


class TestBorderReadout:
    def test_reads_the_object_whatever_its_channel_in_each_image(self):
        flip = torch.tensor([False, True, True, False])
        S = border_readout(_two_region_probs(flip), 1)
        expected = _two_region_probs(torch.zeros(4, dtype=torch.bool))[:, 1]
        torch.testing.assert_close(S, expected, rtol=0, atol=0)

    def test_invariant_to_permuting_channels_per_image(self):
        g = torch.Generator().manual_seed(0)
        p = torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64).softmax(1)
        perm = torch.stack([torch.randperm(3, generator=g) for _ in range(5)])
        permuted = p.gather(1, perm[:, :, None, None].expand(-1, -1, 8, 8))
        assert torch.equal(border_readout(p, 2), border_readout(permuted, 2))

    def test_takes_the_channel_with_the_lowest_border_mean(self):
        p = torch.full((1, 3, 6, 6), 1 / 3, dtype=torch.float64)
        p[0, 2, 0, :] -= 0.1      # channel 2 lowest on the top row (a border row)
        p[0, 0, 0, :] += 0.1
        p[0, 1, 3, 3] = 0.0       # channel 1 lowest in the interior only: not the border
        assert torch.equal(border_readout(p, 1)[0], p[0, 2])


class TestReadoutScores:
    def test_perfect_map(self):
        masks = torch.zeros(3, 8, 8, dtype=torch.bool)
        masks[:, 2:5, 3:6] = True
        s = readout_scores(masks.double(), masks)
        assert s["max_f"] == 1.0 and s["adaptive_f"] == 1.0 and s["mae"] == 0.0
        assert s["recall"] == 1.0 and s["precision"] == 1.0 and s["predicted"] == 9 / 64

    def test_empty_prediction_has_precision_zero_not_nan(self):
        masks = torch.zeros(2, 8, 8, dtype=torch.bool)
        masks[:, :2] = True
        s = readout_scores(torch.full((2, 8, 8), 0.25, dtype=torch.float64), masks)
        assert s["recall"] == 0.0 and s["precision"] == 0.0 and s["predicted"] == 0.0
        assert s["mae"] == pytest.approx(0.25 * 48 / 64 + 0.75 * 16 / 64)


def test_smoke_run_and_swap_invariance_of_cas(monkeypatch):
    """CAS on swapped labels trains bit for bit as on correct labels; cross-entropy does not."""
    monkeypatch.setenv("PIXELBOOK_PROGRESS", "0")
    runs = {labels: EXPERIMENT.run("fcn_cas_lfd", 0, "smoke", cache=False, loss={"labels": labels})
            for labels in ("lfd", "hfd")}
    a, b = (r.model.state_dict() for r in runs.values())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs["lfd"].metrics == runs["hfd"].metrics
    ce = {labels: EXPERIMENT.run("fcn_ce_lfd", 0, "smoke", cache=False, loss={"labels": labels}).model.state_dict()
          for labels in ("lfd", "hfd")}
    assert not all(torch.equal(ce["lfd"][k], ce["hfd"][k]) for k in ce["lfd"])
    metrics = runs["lfd"].metrics
    assert {"val.max_f", "border.max_f", "border.recall", "diag.polarity"} <= set(metrics)


def test_full_scale_path_on_fake_archives(tmp_path, monkeypatch):
    """MSRA-B's train/val split for training and read-out, the test sets streamed, one set of scores each."""
    import pixelbook.data.saliency as saliency
    from fakes import make_sod_archives

    monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIXELBOOK_PROGRESS", "0")
    lists = {"msra_b_zip": {"MSRA-B/train_cvpr2013.txt": "img_000\nimg_001\nimg_002\nimg_003\n",
                            "MSRA-B/valid_cvpr2013.txt": "img_004\n", "MSRA-B/test_cvpr2013.txt": "img_005\n"}}
    make_sod_archives(tmp_path / "staging", "msra_b", 6, lists)  # at most 6 distinct fakes
    make_sod_archives(tmp_path / "staging", "ecssd", 3)
    monkeypatch.setattr(saliency, "SOD_TEST_SETS", ("msra_b", "ecssd"))  # HKU-IS (a RAR) has no fake
    run = EXPERIMENT.run("fcn_cas_lfd", 0, "full", cache=False, train={"epochs": 1},
                         data={"size": 16, "batch_size": 2, "workers": 0}, eval={"border": 2})
    assert len(run.history) == 1 and len(run.history.records[0]["step_loss"]) == 2  # 4 images, batch 2
    m = run.metrics
    assert {"val.max_f", "border.max_f", "ecssd:val.max_f", "ecssd:diag.polarity"} <= set(m)
    assert not any(k.startswith("msra_b:") for k in m)  # the first test set is unprefixed
    assert all(0.0 <= v <= 1.0 for k, v in m.items() if k != "val.channel")
