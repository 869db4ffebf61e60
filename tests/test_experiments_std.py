"""Chapter 3's experiment (pixelbook.experiments.std): the network, the read-outs, the twin arms."""

import pytest
import torch

from pixelbook import experiments
from pixelbook.experiments.std import WithHead, raw_logits, small_fcn
from pixelbook.std import STD

EXP = experiments.get("03_soft_threshold_dynamics")


def test_small_fcn_has_a_9px_receptive_field_and_the_documented_size():
    net = small_fcn(2).eval()
    assert sum(p.numel() for p in net.parameters()) == 4930
    x = torch.zeros(1, 1, 31, 31, requires_grad=True)
    net(x)[0, 1, 15, 15].backward()
    rows, cols = torch.nonzero(x.grad[0, 0].abs() > 0, as_tuple=True)
    assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (9, 9)


def test_with_head_returns_log_probabilities_and_raw_logits_bypass_the_head():
    torch.manual_seed(0)
    model = WithHead(small_fcn(2), STD(3, 1.0, 0.5, output="log_probs")).eval()
    x = torch.randn(3, 1, 16, 16)
    out = model(x)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(3, 16, 16))
    torch.testing.assert_close(raw_logits(model, x, batch=2), model.net(x).detach())
    plain = WithHead(model.net).eval()
    torch.testing.assert_close(plain(x), torch.log_softmax(model.net(x), 1))


def test_every_claim_names_a_metric_its_arms_record():
    # the claims' metrics are the arms' own read-outs on the three scene sets
    keys = {"shapes.miou", "stars.miou", "annuli.miou"}
    assert {c.metric for c in EXP.claims} <= keys
    assert all(c.n == len(EXP.seeds_for("medium")) for c in EXP.claims)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    import os

    old = os.environ.get("PIXELBOOK_CACHE")
    os.environ["PIXELBOOK_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        return {arm.name: EXP.run(arm.name, 0, "smoke", "cpu", cache=False, progress=False) for arm in EXP.arms}
    finally:
        if old is None:
            os.environ.pop("PIXELBOOK_CACHE", None)
        else:
            os.environ["PIXELBOOK_CACHE"] = old


def test_twin_arms_train_the_same_network(smoke_runs):
    # std_post retrains the softmax network, ss_std the std network: deterministic on a CPU
    for twin, arm in (("softmax", "std_post"), ("std", "ss_std")):
        a, b = smoke_runs[twin].model.state_dict(), smoke_runs[arm].model.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert smoke_runs["softmax"].metrics["shapes.std.miou"] == smoke_runs["std_post"].metrics["shapes.miou"]
    assert smoke_runs["std"].metrics["stars.miou"] == smoke_runs["ss_std"].metrics["stars.std.miou"]


def test_each_arm_records_its_own_read_out(smoke_runs):
    m = {arm: run.metrics for arm, run in smoke_runs.items()}
    assert m["softmax"]["shapes.miou"] == m["softmax"]["shapes.argmax.miou"]
    assert m["std"]["shapes.miou"] == m["std"]["shapes.std.miou"]
    assert m["ss_std"]["annuli.miou"] == m["ss_std"]["annuli.ss_std.miou"]
    assert {"shapes.std_lam0.5.miou", "shapes.std_lam4.miou"} <= set(m["std_post"])
    for metrics in m.values():
        assert all(0.0 <= metrics[f"{s}.miou"] <= 1.0 for s in ("shapes", "stars", "annuli"))
