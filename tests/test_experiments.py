"""The experiment machinery on a tiny toy experiment: claims, results files, resume, replay, the command.

The committed results of the chapters are tested in ``tests/test_results.py``.
"""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from pixelbook import experiments, results
from pixelbook.experiments import Arm, Experiment, record_run, replay, result_status
from pixelbook.results import Claim, Results, claims_hash, evaluate_claim
from pixelbook.training import TrainConfig

# ----------------------------------------------------------------------------------------------
# A toy experiment: linear regression, two learning rates and an untrained baseline
# ----------------------------------------------------------------------------------------------


class Toy(Experiment):
    chapter = "99_toy"
    title = "Toy"
    arms = (Arm("fast", "lr 0.3", {"lr": 0.3}), Arm("slow", "lr 0.001", {"lr": 0.001}),
            Arm("zero", "predicts 0, no training"))
    seeds = {"smoke": (0,), "medium": (0, 1, 2)}
    claims = (Claim("fast_wins", "a larger step size fits faster", metric="mse", arm_a="fast", arm_b="slow",
                    margin=0.0, k=3, n=3, higher_is_better=False, paper="–"),
              Claim("slow_wins", "made to fail", metric="mse", arm_a="slow", arm_b="fast", k=2, n=3,
                    higher_is_better=False, expected=False))
    epochs = 3

    def config(self, arm, seed, scale):
        train = None if arm.name == "zero" else TrainConfig(epochs=self.epochs, lr=arm.params["lr"], batch_size=16,
                                                            seed=seed, schedule="cosine")
        return self.make_config(arm, seed, scale, train=train, data={"n": 64, "seed": seed}, model={"d": 4})

    def data(self, config):
        g = torch.Generator().manual_seed(config.data["seed"])
        x = torch.randn(2 * config.data["n"], 4, generator=g)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        n = config.data["n"]
        return {"train": {"x": x[:n], "y": y[:n]}, "val": {"x": x[n:], "y": y[n:]}}

    def model(self, config, data):
        return nn.Linear(config.model["d"], 1)

    def loss(self, config):
        return lambda model, batch: (model(batch["x"]) - batch["y"]).pow(2).mean()

    def evaluate(self, config, model, data):
        pred = torch.zeros_like(data["val"]["y"]) if model is None else model(data["val"]["x"])
        return {"mse": (pred - data["val"]["y"]).pow(2).mean()}

    def monitor(self, config, data):
        return lambda model: {"val_mse": float((model(data["val"]["x"]) - data["val"]["y"]).pow(2).mean())}


class OtherToy(Toy):
    chapter = "98_other_toy"


@pytest.fixture
def toy(monkeypatch):
    """The toy, registered as chapter 99 (and a second one as chapter 98)."""
    exp = Toy()
    for e in (exp, OtherToy()):
        monkeypatch.setitem(experiments.REGISTRY, e.chapter, "toy")
        monkeypatch.setitem(experiments._loaded, e.chapter, e)
    return exp


@pytest.fixture
def root(tmp_path):
    return tmp_path / "results"


def _records(values: dict, metric="m", scale="medium"):
    return Results("99_toy", scale, [{"arm": arm, "seed": s, "metrics": {metric: v}}
                                     for arm, vals in values.items() for s, v in enumerate(vals)])


# ----------------------------------------------------------------------------------------------
# Claims
# ----------------------------------------------------------------------------------------------


class TestClaim:
    @pytest.mark.parametrize("kwargs, match", [
        (dict(id="not an id"), "`id`"),
        (dict(k=4), "`k`: expected an int in \\[1, n=3\\]"),
        (dict(k=0), "`k`"),
        (dict(k=None), "`k`"),
        (dict(k=True), "`k`"),
        (dict(test="paired_t"), "`k`: expected None for test='paired_t'"),
        (dict(test="paired_t", k=None, n=1), "`n`: a paired t-test needs n >= 2"),
        (dict(test="wilcoxon"), "`test`"),
        (dict(margin=math.nan), "`margin`"),
        (dict(margin="0.1"), "`margin`"),
        (dict(arm_b="a"), "`arm_b`: expected an arm other than arm_a"),
        (dict(scale="large"), "`scale`"),
        (dict(metric=""), "`metric`"),
        (dict(n=0), "`n`"),
        (dict(expected=1), "`expected`"),
    ])
    def test_bad_declarations_are_errors_naming_the_field(self, kwargs, match):
        base = dict(id="c", statement="s", metric="m", arm_a="a", arm_b="b", k=2, n=3)
        with pytest.raises(ValueError, match=match):
            Claim(**{**base, **kwargs})

    def test_hash_covers_what_decides_the_outcome_only(self):
        c = Claim("c", "s", metric="m", arm_a="a", arm_b="b", margin=0.01, k=2, n=3)
        h = claims_hash([c])
        for same in (dict(statement="other words"), dict(expected=False), dict(paper="0.7 vs 0.6"), dict(fmt=".1f")):
            assert claims_hash([Claim(**{**c.__dict__, **same})]) == h
        for other in (dict(margin=0.02), dict(k=3), dict(metric="m2"), dict(higher_is_better=False),
                      dict(arm_b="z"), dict(id="d")):
            assert claims_hash([Claim(**{**c.__dict__, **other})]) != h, other

    def test_metric_b_is_hashed_only_when_set(self):
        c = Claim("c", "s", metric="m", arm_a="a", arm_b="b", margin=0.01, k=2, n=3)
        assert "metric_b" not in c.hashed()  # claims written before the field keep their hash
        with_b = Claim(**{**c.__dict__, "metric_b": "m2"})
        assert with_b.hashed()["metric_b"] == "m2" and claims_hash([with_b]) != claims_hash([c])

    def test_metric_b_allows_one_arm_scored_two_ways(self):
        with pytest.raises(ValueError, match="`arm_b`: expected an arm other than arm_a"):
            Claim("c", "s", metric="m", arm_a="a", arm_b="a", k=1, n=3, metric_b="m")
        c = Claim("c", "s", metric="iou.fine", metric_b="iou.coarse", arm_a="a", arm_b="a", margin=-0.01, k=2, n=3)
        assert c.rule() == ("iou.fine (higher is better): a (iou.fine) − a (iou.coarse) > -0.010 "
                            "on at least 2 of 3 seeds")
        res = Results("99_toy", "medium", [{"arm": "a", "seed": s, "metrics": {"iou.fine": f, "iou.coarse": g}}
                                           for s, (f, g) in enumerate([(0.5, 0.5), (0.48, 0.5), (0.7, 0.6)])])
        out = evaluate_claim(c, res)
        assert out.a == (0.5, 0.48, 0.7) and out.b == (0.5, 0.5, 0.6)
        assert out.wins == 2 and out.holds  # -0.02 does not beat the margin -0.01

    def test_hash_is_independent_of_order(self):
        a = Claim("a", "s", metric="m", arm_a="x", arm_b="y", k=1, n=3)
        b = Claim("b", "s", metric="m", arm_a="y", arm_b="x", k=1, n=3)
        assert claims_hash([a, b]) == claims_hash([b, a]) != claims_hash([a])

    def test_rule_states_the_decision(self):
        c = Claim("c", "s", metric="depth.d1", arm_a="l1l2", arm_b="l2", margin=0.005, k=3, n=3)
        assert c.rule() == "depth.d1 (higher is better): l1l2 − l2 > 0.005 on at least 3 of 3 seeds"


class TestEvaluateClaim:
    claim = Claim("c", "A beats B", metric="m", arm_a="a", arm_b="b", margin=0.01, k=2, n=3)

    def test_counts_seeds_that_beat_the_margin(self):
        out = evaluate_claim(self.claim, _records({"a": [0.5, 0.52, 0.6], "b": [0.4, 0.52, 0.5]}))
        assert out.seeds == (0, 1, 2) and out.wins == 2 and out.holds
        assert out.diffs == pytest.approx((0.1, 0.0, 0.1))
        assert out.words == "holds on 2 of 3 seeds (needs 2): holds"

    def test_k_minus_one_wins_does_not_hold(self):
        out = evaluate_claim(self.claim, _records({"a": [0.5, 0.5, 0.5], "b": [0.4, 0.5, 0.5]}))
        assert out.wins == 1 and not out.holds
        assert out.words == "holds on 1 of 3 seeds (needs 2): does not hold"

    def test_a_tie_with_the_margin_does_not_count(self):
        claim = Claim("c", "s", metric="m", arm_a="a", arm_b="b", margin=0.25, k=1, n=3)
        out = evaluate_claim(claim, _records({"a": [0.75, 0.75, 0.75], "b": [0.5, 0.5, 0.5]}))  # exact in binary
        assert out.diffs == (0.25, 0.25, 0.25) and out.wins == 0 and not out.holds

    def test_equal_arms_never_beat_a_zero_margin(self):
        claim = Claim("c", "s", metric="m", arm_a="a", arm_b="b", margin=0.0, k=1, n=3)
        assert not evaluate_claim(claim, _records({"a": [0.3, 0.4, 0.5], "b": [0.3, 0.4, 0.5]})).holds

    def test_lower_is_better_flips_the_difference(self):
        claim = Claim("c", "s", metric="m", arm_a="a", arm_b="b", k=3, n=3, higher_is_better=False)
        out = evaluate_claim(claim, _records({"a": [1.0, 2.0, 3.0], "b": [1.5, 2.5, 3.5]}))
        assert out.diffs == (0.5, 0.5, 0.5) and out.holds

    def test_negative_margin_means_not_worse_by_that_much(self):
        claim = Claim("c", "s", metric="m", arm_a="a", arm_b="b", margin=-0.02, k=3, n=3)
        assert evaluate_claim(claim, _records({"a": [0.69, 0.70, 0.71], "b": [0.70, 0.71, 0.72]})).holds
        assert not evaluate_claim(claim, _records({"a": [0.67, 0.70, 0.71], "b": [0.70, 0.71, 0.72]})).holds

    @pytest.mark.parametrize("values, match", [
        ({"a": [0.5, 0.5, 0.5], "b": [0.4, 0.4]}, "needs the same 3 seeds"),
        ({"a": [0.5, 0.5], "b": [0.4, 0.4]}, "needs the same 3 seeds"),
        ({"a": [0.5, math.nan, 0.5], "b": [0.4, 0.4, 0.4]}, "not finite for seeds \\[1\\]"),
    ])
    def test_incomplete_or_invalid_results_are_errors(self, values, match):
        with pytest.raises(ValueError, match=match):
            evaluate_claim(self.claim, _records(values))

    def test_missing_arm_or_metric_is_an_error_naming_it(self):
        with pytest.raises(KeyError, match="no runs of arm 'b'"):
            evaluate_claim(self.claim, _records({"a": [1, 2, 3]}))
        with pytest.raises(KeyError, match="no metric 'm'"):
            evaluate_claim(self.claim, _records({"a": [1, 2, 3], "b": [1, 2, 3]}, metric="other"))

    def test_results_of_another_scale_are_refused(self):
        with pytest.raises(ValueError, match="decided at scale 'medium'"):
            evaluate_claim(self.claim, _records({"a": [1, 2, 3], "b": [1, 2, 3]}, scale="small"))

    def test_paired_t_matches_scipy(self):
        from scipy import stats

        claim = Claim("c", "s", metric="m", arm_a="a", arm_b="b", margin=0.01, n=4, k=None, test="paired_t")
        a, b = [0.61, 0.58, 0.66, 0.60], [0.55, 0.57, 0.60, 0.57]
        out = evaluate_claim(claim, _records({"a": a, "b": b}))
        ref = stats.ttest_1samp([x - y - 0.01 for x, y in zip(a, b)], 0.0, alternative="greater")
        assert out.t == pytest.approx(ref.statistic) and out.p == pytest.approx(ref.pvalue)
        assert out.holds == (ref.pvalue < 0.05)
        assert "paired t-test against the margin" in out.words

    def test_paired_t_with_zero_spread(self):
        claim = Claim("c", "s", metric="m", arm_a="a", arm_b="b", margin=0.0, n=3, k=None, test="paired_t")
        assert evaluate_claim(claim, _records({"a": [2, 3, 4], "b": [1, 2, 3]})).p == 0.0
        assert evaluate_claim(claim, _records({"a": [1, 2, 3], "b": [1, 2, 3]})).p == 1.0

    def test_check_asserts_the_expectation_never_the_outcome_alone(self):
        held = evaluate_claim(self.claim, _records({"a": [1, 1, 1], "b": [0, 0, 0]}))
        held.check()
        failed = evaluate_claim(self.claim, _records({"a": [0, 0, 0], "b": [1, 1, 1]}))
        with pytest.raises(AssertionError, match="expected to hold, but it does not hold"):
            failed.check()
        expected_to_fail = Claim(**{**self.claim.__dict__, "expected": False})
        evaluate_claim(expected_to_fail, _records({"a": [0, 0, 0], "b": [1, 1, 1]})).check()
        with pytest.raises(AssertionError, match="expected to fail, but it holds"):
            evaluate_claim(expected_to_fail, _records({"a": [1, 1, 1], "b": [0, 0, 0]})).check()

    def test_str_gives_means_differences_and_words(self):
        text = str(evaluate_claim(self.claim, _records({"a": [0.5, 0.52, 0.6], "b": [0.4, 0.52, 0.5]})))
        assert "[c] A beats B" in text and "+0.100, +0.000, +0.100" in text and "holds on 2 of 3 seeds" in text


class TestResultsTable:
    def test_mean_and_sample_std(self):
        res = _records({"a": [1.0, 2.0, 3.0]})
        s = res.summary("a", "m")
        assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
        assert format(s, ".2f") == "2.00 ± 1.00"
        assert format(_records({"a": [1.0]}).summary("a", "m"), ".1f") == "1.0 ± –"

    def test_table_has_a_row_per_arm(self):
        text = _records({"a": [1.0, 2.0, 3.0], "b": [0.0, 0.0, 0.0]}).table(["m"], labels={"a": "arm A"})
        lines = text.splitlines()
        assert lines[1].startswith("arm A") and "2.000 ± 1.000" in lines[1] and "0.000 ± 0.000" in lines[2]
        assert "3 seeds" in lines[-1]

    def test_markdown_table_has_a_header_a_row_per_arm_and_blank_missing_cells(self):
        res = _records({"a": [1.0, 2.0, 3.0], "b": [0.0, 0.0, 0.0]})
        for r in res.records[3:]:  # arm b has a second metric, arm a has not
            r["metrics"]["only_b"] = 1.0
        lines = res.table(["m", "only_b"], labels={"a": "arm A", "m": "M"}, markdown=True).splitlines()
        assert lines[:2] == ["| | M | only_b |", "|---|---|---|"]
        assert lines[2] == "| arm A | 2.000 ± 1.000 |  |"
        assert lines[3] == "| b | 0.000 ± 0.000 | 1.000 ± 0.000 |"
        assert lines[-1].startswith("Mean ± sample standard deviation over 3 seeds")

    def test_duplicate_runs_are_refused(self):
        with pytest.raises(ValueError, match="two records for arm 'a', seed 0"):
            Results("x", "medium", [{"arm": "a", "seed": 0, "metrics": {}}] * 2)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


class TestFiles:
    def test_write_is_atomic_when_interrupted(self, tmp_path, monkeypatch):
        path = tmp_path / "r.json"
        results.write_result(path, {"format": results.FORMAT, "v": 1})

        def broken_dump(obj, f, **kw):
            f.write('{"format": "pixelbook-res')  # half a file ...
            raise KeyboardInterrupt  # ... and the process is stopped

        monkeypatch.setattr(results.json, "dump", broken_dump)
        with pytest.raises(KeyboardInterrupt):
            results.write_result(path, {"format": results.FORMAT, "v": 2})
        assert results.read_result(path)["v"] == 1  # the old file is intact
        assert os.listdir(tmp_path) == ["r.json"]  # and no temporary file is left behind

    def test_unreadable_files_are_errors(self, tmp_path):
        (tmp_path / "bad.json").write_text("{not json")
        with pytest.raises(ValueError, match="not valid JSON"):
            results.read_result(tmp_path / "bad.json")
        (tmp_path / "other.json").write_text('{"format": "something else"}')
        with pytest.raises(ValueError, match="not a pixelbook-result/1 results file"):
            results.read_result(tmp_path / "other.json")

    def test_missing_results_say_which_command_makes_them(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="make results NB=notebooks/99_toy.ipynb"):
            results.load_results("99_toy", root=tmp_path)

    def test_stable_hash_refuses_what_has_no_canonical_text(self):
        assert results.stable_hash({"a": 1.0, "b": (1, 2)}) == results.stable_hash({"b": [1, 2], "a": 1.0})
        assert results.stable_hash({"a": 1.0}) != results.stable_hash({"a": 1})
        with pytest.raises(TypeError, match="cannot hash a function"):
            results.stable_hash({"f": lambda x: x})


# ----------------------------------------------------------------------------------------------
# Experiments, runs, resume, replay
# ----------------------------------------------------------------------------------------------


class TestDeclarations:
    def _make(self, **attrs):
        return type("Bad", (Toy,), attrs)

    @pytest.mark.parametrize("attrs, match", [
        (dict(chapter=""), "set `chapter`"),
        (dict(arms=(Arm("a"), Arm("a"))), "unique names"),
        (dict(seeds={"medium": (0, 0, 1)}), "distinct ints"),
        (dict(seeds={"huge": (0,)}), "`seeds`"),
        (dict(seeds={"medium": (0, 1)}), "claim 'fast_wins' is evaluated on n=3 seeds, but the experiment runs 2"),
        (dict(claims=(Claim("c", "s", metric="mse", arm_a="fast", arm_b="nope", k=1, n=3),)), "names arm 'nope'"),
        (dict(replay_arm="nope"), "`replay_arm`"),
    ])
    def test_bad_declarations_fail_at_construction(self, attrs, match):
        with pytest.raises(ValueError, match=match):
            self._make(**attrs)()

    def test_arm_names_are_lower_case_identifiers(self):
        with pytest.raises(ValueError, match="`name`"):
            Arm("Depth-L2")

    def test_config_must_describe_the_requested_run(self, toy, monkeypatch):
        monkeypatch.setattr(toy, "config", lambda arm, seed, scale: Toy.config(toy, toy.arm("slow"), seed, scale))
        with pytest.raises(ValueError, match="returned the config of .*'slow'.*expected .*'fast'"):
            toy.run_config("fast", 0, "medium")

    def test_config_hash_ignores_the_package_version(self, toy, monkeypatch):
        import pixelbook

        h = toy.run_config("fast", 0, "medium").hash
        monkeypatch.setattr(pixelbook, "__version__", "99.0")
        assert toy.run_config("fast", 0, "medium").hash == h
        assert toy.run_config("fast", 1, "medium").hash != h

    def test_train_seed_must_be_the_run_seed(self, toy):
        with pytest.raises(ValueError, match="must be the run's seed"):
            toy.make_config(toy.arm("fast"), 1, "medium", train=TrainConfig(seed=0))

    def test_metrics_must_be_flat_numbers(self, toy, monkeypatch):
        monkeypatch.setattr(toy, "evaluate", lambda config, model, data: {"seg": {"miou": 0.5}})
        with pytest.raises(TypeError, match="metric 'seg' must be a number"):
            toy.run("zero", 0, "medium")

    def test_unknown_arm_and_scale_are_errors(self, toy):
        with pytest.raises(ValueError, match="`arm`: expected one of"):
            toy.run_config("medium_lr", 0, "medium")
        with pytest.raises(ValueError, match="no 'small' seeds"):
            toy.seeds_for("small")


class TestRun:
    def test_notebook_run_trains_then_loads_from_the_cache(self, toy):
        first = toy.run("fast", 0, "medium", device="cpu")
        assert first.train_time_s > 0 and len(first.history) == Toy.epochs
        assert first.metrics["mse"] < 0.5 * toy.run("zero", 0, "medium").metrics["mse"]
        again = toy.run("fast", 0, "medium", device="cpu")
        assert again.metrics == first.metrics and again.history.records == first.history.records

    def test_same_seed_same_initial_weights_whatever_ran_before(self, toy):
        a = toy.run("fast", 1, "medium", cache=False).metrics
        toy.run("slow", 2, "medium", cache=False)  # other data and another seed in between
        assert toy.run("fast", 1, "medium", cache=False).metrics == a

    def test_overrides_change_the_run_and_its_hash(self, toy):
        base = toy.run_config("fast", 0, "medium")
        cfg = toy.run_config("fast", 0, "medium", {"train": {"epochs": 1}, "data": {"n": 32}})
        assert cfg.train.epochs == 1 and cfg.data == {"n": 32, "seed": 0} and cfg.hash != base.hash
        run = toy.run("fast", 0, "medium", train={"epochs": 1})
        assert len(run.history) == 1 and run.config.train.epochs == 1

    @pytest.mark.parametrize("overrides, match", [
        ({"optimizer": {}}, "`overrides`: expected one of"),
        ({"train": {"epochz": 2}}, "'epochz'.* are not TrainConfig fields"),
        ({"train": {"seed": 3}}, "'seed'.* are not TrainConfig fields"),
    ])
    def test_bad_overrides_are_errors(self, toy, overrides, match):
        with pytest.raises(ValueError, match=match):
            toy.run_config("fast", 0, "medium", overrides)
        with pytest.raises(ValueError, match="does not train"):
            toy.run_config("zero", 0, "medium", {"train": {"epochs": 2}})

    def test_untrained_arm_is_only_evaluated(self, toy):
        run = toy.run("zero", 0, "medium")
        assert run.model is None and len(run.history) == 0 and run.metrics["mse"] > 5.0


def _strip(history):
    """A history without its wall-clock times (the only field two equal runs may differ in)."""
    return [{k: v for k, v in r.items() if k != "time"} for r in history]


def _dying_monitor(cls, calls: int):
    """``cls.monitor`` that raises KeyboardInterrupt on its ``calls``-th call (an interrupted run)."""
    monitor, count = cls.monitor, {"n": 0}

    def dying(self, config, data):
        inner = monitor(self, config, data)

        def fn(model):
            count["n"] += 1
            if count["n"] == calls:
                raise KeyboardInterrupt
            return inner(model)
        return fn

    return dying


class TestRecordRun:
    def test_file_has_metrics_history_config_hashes_and_provenance(self, toy, root):
        path = record_run(toy, "fast", 0, "medium", device="cpu", root=root)
        assert path == root / "99_toy" / "medium-fast-seed0.json"
        r = results.read_result(path)
        cfg = toy.run_config("fast", 0, "medium")
        assert (r["chapter"], r["arm"], r["seed"], r["scale"]) == ("99_toy", "fast", 0, "medium")
        assert r["config_hash"] == cfg.hash and r["config"] == cfg.to_dict()
        assert r["claims_hash"] == toy.claims_hash()
        assert set(r["metrics"]) == {"mse"} and len(r["history"]) == 3
        assert [len(h["step_loss"]) for h in r["history"]] == [4, 4, 4] and "val_mse" in r["history"][-1]
        p = r["provenance"]
        assert p["pixelbook"] and p["env"]["torch_threads"] == torch.get_num_threads()
        assert set(p) >= {"git_commit", "git_dirty", "train_time_s", "wall_time_s", "finished_at", "command", "resumed"}
        assert p["train_time_s"] > 0 and p["resumed"] is False

    def test_status_detects_stale_config_and_changed_claims(self, toy, root, monkeypatch):
        record_run(toy, "fast", 0, "medium", root=root)
        assert result_status(toy, "fast", 0, "medium", root) == "up to date"
        assert result_status(toy, "fast", 1, "medium", root) == "missing"
        monkeypatch.setattr(Toy, "epochs", 4)
        assert result_status(toy, "fast", 0, "medium", root) == "stale: config"
        monkeypatch.setattr(Toy, "epochs", 3)
        moved = (Claim(**{**Toy.claims[0].__dict__, "margin": 0.001}),) + Toy.claims[1:]
        monkeypatch.setattr(toy, "claims", moved)
        assert result_status(toy, "fast", 0, "medium", root) == "stale: claims"
        (root / "99_toy" / "medium-fast-seed0.json").write_text("{")
        assert result_status(toy, "fast", 0, "medium", root) == "unreadable"

    def test_interrupted_run_resumes_to_the_same_result(self, toy, root, tmp_path, monkeypatch):
        whole = results.read_result(record_run(toy, "fast", 1, "medium", root=tmp_path / "whole"))
        monitor = Toy.monitor
        monkeypatch.setattr(Toy, "monitor", _dying_monitor(Toy, 2))  # at epoch 2's end, after epoch 1 was checkpointed
        with pytest.raises(KeyboardInterrupt):
            record_run(toy, "fast", 1, "medium", root=root)
        assert not (root / "99_toy" / "medium-fast-seed1.json").exists()
        monkeypatch.setattr(Toy, "monitor", monitor)
        resumed = results.read_result(record_run(toy, "fast", 1, "medium", root=root))
        assert resumed["provenance"]["resumed"] is True
        assert resumed["metrics"] == whole["metrics"]
        assert _strip(resumed["history"]) == _strip(whole["history"])
        assert os.listdir(os.path.join(os.environ["PIXELBOOK_CACHE"], "runs", "99_toy")) == []  # checkpoint removed


class TestReplay:
    def test_replay_of_a_recorded_run_is_bit_identical_on_the_same_machine(self, toy, root):
        record = results.read_result(record_run(toy, "slow", 2, "medium", root=root))
        out = replay(toy, record)  # default: the first epoch
        assert out.steps == 4 and out.same_env and out.max_abs_diff == 0.0 and out.matches()
        assert replay(toy, record, steps=10).steps == 10  # across the epoch boundary too
        assert "identical" in str(out)

    def test_replay_uses_the_recorded_thread_count(self, toy, root):
        record = results.read_result(record_run(toy, "slow", 2, "medium", root=root))
        record["provenance"]["env"]["torch_threads"] = 1
        before = torch.get_num_threads()
        seen = []
        loss = Toy.loss

        def spy(self, config):
            seen.append(torch.get_num_threads())
            return loss(self, config)

        import unittest.mock
        with unittest.mock.patch.object(Toy, "loss", spy):
            out = replay(toy, record)
        assert seen == [1] and torch.get_num_threads() == before and out.same_env

    def test_a_history_not_made_by_the_code_does_not_match(self, toy, root):
        record = results.read_result(record_run(toy, "slow", 2, "medium", root=root))
        record["history"][0]["step_loss"][2] *= 1.001
        assert not replay(toy, record).matches()

    def test_stale_or_untrained_records_cannot_be_replayed(self, toy, root, monkeypatch):
        record = results.read_result(record_run(toy, "fast", 0, "medium", root=root))
        with pytest.raises(ValueError, match="cannot replay 50 steps"):
            replay(toy, record, steps=50)
        monkeypatch.setattr(Toy, "epochs", 5)
        with pytest.raises(ValueError, match="stale"):
            replay(toy, record)
        zero = results.read_result(record_run(toy, "zero", 0, "medium", root=root))
        with pytest.raises(ValueError, match="does not train"):
            replay(toy, zero)


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------


def _main(*argv):
    from pixelbook import run

    return run.main([str(a) for a in argv])


class TestCommand:
    def test_runs_every_arm_and_seed_then_skips_them(self, toy, root, capsys):
        assert _main("99_toy", "--results", root) == 0
        files = sorted(p.name for p in (root / "99_toy").iterdir())
        assert files == [f"medium-{a}-seed{s}.json" for a in ("fast", "slow", "zero") for s in (0, 1, 2)]
        out = capsys.readouterr().out
        written = [line.split("/")[-1].split(" ")[0] for line in out.splitlines() if line.startswith("wrote")]
        assert written[:3] == ["medium-fast-seed0.json", "medium-slow-seed0.json", "medium-zero-seed0.json"]
        assert "9 run(s) at scale medium: 9 to run, 0 up to date" in out
        assert "[fast_wins]" in out and "holds on 3 of 3 seeds (needs 3): holds" in out
        stamps = {p: p.stat().st_mtime_ns for p in (root / "99_toy").iterdir()}
        assert _main("99", "--results", root) == 0  # by chapter number
        assert "9 run(s) at scale medium: 0 to run, 9 up to date (skipped)" in capsys.readouterr().out
        assert {p: p.stat().st_mtime_ns for p in (root / "99_toy").iterdir()} == stamps

    def test_resumes_after_an_interruption_and_reruns_stale_files(self, toy, root, capsys, monkeypatch):
        assert _main("notebooks/99_toy.ipynb", "--arm", "fast", "--seed", "0", "1", "--results", root) == 0
        monkeypatch.setattr(Toy, "epochs", 2)  # the config changed: both files are stale
        assert _main("99_toy", "--arm", "fast", "slow", "--results", root) == 0
        out = capsys.readouterr().out
        assert "6 run(s) at scale medium: 6 to run, 0 up to date" in out and "(was stale: config)" in out

    def test_list_reports_status_and_runs_nothing(self, toy, root, capsys):
        _main("99_toy", "--arm", "zero", "--seed", "0", "--results", root)
        capsys.readouterr()
        assert _main("99_toy", "--list", "--results", root) == 0
        out = capsys.readouterr().out
        assert "medium-zero-seed0: up to date" in out and "medium-fast-seed0: missing" in out
        assert "[fast_wins] not evaluated" in out
        assert sorted(p.name for p in (root / "99_toy").iterdir()) == ["medium-zero-seed0.json"]

    def test_a_failing_run_is_reported_and_the_others_go_on(self, toy, root, capsys, monkeypatch):
        loss = Toy.loss

        def broken(self, config):
            if config.arm == "slow":
                raise RuntimeError("boom")
            return loss(self, config)

        monkeypatch.setattr(Toy, "loss", broken)
        assert _main("99_toy", "--seed", "0", "--results", root) == 1
        assert "FAILED 99_toy slow seed 0" in capsys.readouterr().err
        assert sorted(p.name for p in (root / "99_toy").iterdir()) == ["medium-fast-seed0.json", "medium-zero-seed0.json"]

    @pytest.mark.parametrize("argv, match", [
        ([], "give a chapter"),
        (["42_nope"], "chapter: expected one of"),
        (["99_toy", "--scale", "large"], "--scale: expected one of smoke, small, medium, full"),
        (["99_toy", "--scale", "small"], "99_toy has no 'small' configuration"),
        (["99_toy", "--arm", "medium_lr"], "--arm: 'medium_lr' is not an arm of 99_toy; arms: fast, slow, zero"),
        (["99_toy", "99_toy", "--arm", "fast"], None),  # the same chapter twice is one chapter
        (["all", "--arm", "fast"], "--arm: give exactly one chapter with --arm"),
        (["99_toy", "--seed", "7"], "--seed: 7 is not one of the medium seeds of 99_toy: \\[0, 1, 2\\]"),
        (["99_toy", "--seed", "one"], "--seed: expected integers, got 'one'"),
        (["99_toy", "--device", "gpu0"], None),
    ])
    def test_bad_flags_exit_2_with_a_message(self, toy, root, capsys, argv, match):
        if match is None:
            return
        with pytest.raises(SystemExit) as exc:
            _main(*argv, "--results", root)
        assert exc.value.code == 2
        assert __import__("re").search(match, capsys.readouterr().err)

    def test_bad_device_is_a_bad_argument(self, toy, root, capsys):  # checked once, before any run (issue 16)
        with pytest.raises(SystemExit) as exc:
            _main("99_toy", "--arm", "fast", "--seed", "0", "--device", "gpu0", "--results", root)
        assert exc.value.code == 2
        assert "`device`: expected" in capsys.readouterr().err
        assert not root.exists()

    def test_help_runs_as_a_module(self):
        proc = subprocess.run([sys.executable, "-m", "pixelbook.run", "--help"], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0 and "--scale" in proc.stdout and "--arm" in proc.stdout

    def test_page_lists_every_claim_with_its_verdict(self, toy, root, tmp_path):
        _main("99_toy", "--results", root)
        page = tmp_path / "results.md"
        assert _main("--page", page, "--results", root) == 0
        text = page.read_text()
        assert text.startswith("# Results at a glance") and "Do not edit" in text
        rows = [line for line in text.splitlines() if line.startswith("| 99 |")]  # no notebook: no link
        assert len(rows) == 2
        assert "a larger step size fits faster" in rows[0] and "**holds** (holds on 3 of 3 seeds (needs 3))" in rows[0]
        assert "made to fail" in rows[1] and "**does not hold** (holds on 0 of 3 seeds (needs 2))" in rows[1]
        other = [line for line in text.splitlines() if line.startswith("| 98 |")]
        assert len(other) == 2 and all("not run yet" in line for line in other)


# ----------------------------------------------------------------------------------------------
# A shared prefix: epochs several arms have in common, trained once
# ----------------------------------------------------------------------------------------------


class _Counted(nn.Module):
    """A linear model that counts its training steps (a buffer, so the count survives a resume)."""

    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, 1)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        return self.lin(x)


class PrefixToy(Toy):
    """Two arms that differ only after their first epoch (4 steps): the loss's weight changes then.
    The loss draws random numbers, so a run that starts from the prefix must also take its random state."""

    chapter = "97_prefix_toy"
    arms = (Arm("a", "weight 1 after epoch 1", {"late": 1.0}), Arm("b", "weight 3 after epoch 1", {"late": 3.0}),
            Arm("c", "as b, other lr", {"late": 3.0, "lr": 0.05}))
    claims = ()
    prefix_epochs = 1

    def config(self, arm, seed, scale):
        train = TrainConfig(epochs=3, lr=arm.params.get("lr", 0.1), batch_size=16, seed=seed, schedule="cosine")
        return self.make_config(arm, seed, scale, train=train, data={"n": 64, "seed": seed}, model={"d": 4},
                                loss={"late": arm.params["late"]})

    def model(self, config, data):
        return _Counted(config.model["d"])

    def loss(self, config):
        late = config.loss["late"]

        def fn(model, batch):
            model.step += 1
            weight = 1.0 if int(model.step) <= 4 else late
            noise = 0.1 * torch.randn(batch["y"].shape)
            return weight * (model(batch["x"]) - batch["y"] - noise).pow(2).mean()

        return fn

    def shared_prefix(self, config):
        d = config.to_dict()
        d.pop("arm")
        d["loss"] = {}  # the weight acts after the first epoch only
        return d, self.prefix_epochs


@pytest.fixture
def ptoy(monkeypatch):
    exp = PrefixToy()
    monkeypatch.setitem(experiments.REGISTRY, exp.chapter, "toy")
    monkeypatch.setitem(experiments._loaded, exp.chapter, exp)
    monkeypatch.setattr(results, "git_state", lambda path=None: {"commit": "c0ffee", "dirty": False})
    return exp


def _prefix_files():
    folder = os.path.join(os.environ["PIXELBOOK_CACHE"], "prefix", "97_prefix_toy")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


class TestSharedPrefix:
    @pytest.fixture(autouse=True)
    def _fresh_prefixes(self):
        import shutil

        shutil.rmtree(os.path.join(os.environ["PIXELBOOK_CACHE"], "prefix"), ignore_errors=True)

    def test_a_run_starts_from_the_prefix_another_arm_kept_and_equals_the_run_trained_whole(self, ptoy, tmp_path,
                                                                                             monkeypatch):
        a = results.read_result(record_run(ptoy, "a", 1, "medium", root=tmp_path / "r"))
        assert a["provenance"]["shared_prefix"] is None and len(_prefix_files()) == 1
        b = results.read_result(record_run(ptoy, "b", 1, "medium", root=tmp_path / "r"))
        assert b["provenance"]["shared_prefix"] == {"arm": "a", "epochs": 1}
        assert b["provenance"]["resumed"] is False
        assert b["history"][0] == a["history"][0]  # the epoch it did not train, time included
        assert b["provenance"]["train_time_s"] == pytest.approx(sum(r["time"] for r in b["history"][1:]))
        # the same run trained whole (no prefix outside a clean checkout)
        monkeypatch.setattr(results, "git_state", lambda path=None: {"commit": "c0ffee", "dirty": True})
        whole = results.read_result(record_run(ptoy, "b", 1, "medium", root=tmp_path / "whole"))
        assert whole["provenance"]["shared_prefix"] is None
        assert b["metrics"] == whole["metrics"] and _strip(b["history"]) == _strip(whole["history"])
        assert b["metrics"] != a["metrics"]  # the arms do differ after the prefix

    def test_runs_with_another_key_seed_or_commit_do_not_share(self, ptoy, tmp_path, monkeypatch):
        record_run(ptoy, "a", 0, "medium", root=tmp_path)
        c = results.read_result(record_run(ptoy, "c", 0, "medium", root=tmp_path))  # other lr: other key
        b1 = results.read_result(record_run(ptoy, "b", 1, "medium", root=tmp_path))  # other seed
        monkeypatch.setattr(results, "git_state", lambda path=None: {"commit": "beef", "dirty": False})
        b0 = results.read_result(record_run(ptoy, "b", 0, "medium", root=tmp_path))  # other commit
        assert [r["provenance"]["shared_prefix"] for r in (c, b1, b0)] == [None, None, None]
        assert len(_prefix_files()) == 4

    def test_nothing_is_kept_or_shared_outside_a_clean_checkout(self, ptoy, tmp_path, monkeypatch):
        for state in ({"commit": "c0ffee", "dirty": True}, {"commit": None, "dirty": None}):
            monkeypatch.setattr(results, "git_state", lambda path=None, s=state: s)
            record_run(ptoy, "a", 0, "medium", root=tmp_path)
            b = results.read_result(record_run(ptoy, "b", 0, "medium", root=tmp_path))
            assert b["provenance"]["shared_prefix"] is None and _prefix_files() == []

    def test_an_interrupted_run_that_started_from_a_prefix_still_says_so(self, ptoy, tmp_path, monkeypatch):
        record_run(ptoy, "a", 2, "medium", root=tmp_path / "r")
        whole_b = results.read_result(record_run(ptoy, "b", 2, "medium", root=tmp_path / "first"))
        monitor = PrefixToy.monitor
        # its 2nd monitor call is at epoch 3's end (epoch 1 came from the prefix), after epoch 2 was checkpointed
        monkeypatch.setattr(PrefixToy, "monitor", _dying_monitor(PrefixToy, 2))
        with pytest.raises(KeyboardInterrupt):
            record_run(ptoy, "b", 2, "medium", root=tmp_path / "r")
        monkeypatch.setattr(PrefixToy, "monitor", monitor)
        b = results.read_result(record_run(ptoy, "b", 2, "medium", root=tmp_path / "r"))
        p = b["provenance"]
        assert p["resumed"] is True and p["shared_prefix"] == {"arm": "a", "epochs": 1}
        assert b["metrics"] == whole_b["metrics"] and _strip(b["history"]) == _strip(whole_b["history"])
        assert os.listdir(os.path.join(os.environ["PIXELBOOK_CACHE"], "runs", "97_prefix_toy")) == []

    @pytest.mark.parametrize("epochs", [0, 3, 1.0, True])
    def test_a_prefix_of_no_epoch_or_of_the_whole_run_is_an_error(self, ptoy, tmp_path, monkeypatch, epochs):
        monkeypatch.setattr(PrefixToy, "prefix_epochs", epochs)
        with pytest.raises(ValueError, match=r"^PrefixToy.shared_prefix: expected epochs in \[1, 2\]"):
            record_run(ptoy, "a", 0, "medium", root=tmp_path)
