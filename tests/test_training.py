import pytest
import torch
from torch import nn

from pixelbook.training import History, TrainConfig, config_hash, fit, iterate_batches, train_or_load


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return {"x": x, "y": x @ w + 0.01 * torch.randn(n, 1, generator=g)}


def _loss(model, batch):
    mse = (model(batch["x"]) - batch["y"]).pow(2).mean()
    return mse, {"mse": mse}


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(4, 1)


class TestFit:
    def test_loss_decreases_and_history_has_every_epoch(self):
        cfg = TrainConfig(epochs=5, lr=0.3, batch_size=16)
        hist = fit(_model(), _loss, _data(), cfg, progress=False, evaluate=lambda m: {"w0": m.weight[0, 0]})
        assert len(hist) == 5 and hist["epoch"] == [1, 2, 3, 4, 5]
        assert hist["train_loss"][-1] < 0.1 * hist["train_loss"][0]
        assert len(hist["mse"]) == 5 and len(hist["w0"]) == 5

    def test_resume_after_interruption_equals_uninterrupted_run(self, tmp_path):
        cfg = TrainConfig(epochs=4, lr=0.05, batch_size=8, seed=1)
        ref = _model()
        fit(ref, _loss, _data(), cfg, progress=False)

        class Stop(Exception):
            pass

        def stop_after_two(epoch, history):
            if epoch == 2:
                raise Stop

        path = str(tmp_path / "run.pt")
        interrupted = _model()
        with pytest.raises(Stop):
            fit(interrupted, _loss, _data(), cfg, progress=False, checkpoint_path=path, callback=stop_after_two)
        resumed = _model(seed=123)  # a fresh process would start from other weights
        hist = fit(resumed, _loss, _data(), cfg, progress=False, checkpoint_path=path)
        assert hist["epoch"] == [1, 2, 3, 4]
        for a, b in zip(ref.parameters(), resumed.parameters()):
            assert torch.equal(a, b)

    def test_checkpoint_of_another_configuration_is_refused(self, tmp_path):
        path = str(tmp_path / "run.pt")
        fit(_model(), _loss, _data(), TrainConfig(epochs=1), progress=False, checkpoint_path=path)
        with pytest.raises(ValueError, match="another configuration"):
            fit(_model(), _loss, _data(), TrainConfig(epochs=2), progress=False, checkpoint_path=path)

    def test_non_finite_loss_names_epoch_and_step(self):
        def bad(model, batch):
            return model(batch["x"]).sum() * float("nan")

        with pytest.raises(FloatingPointError, match="epoch 0, step 0"):
            fit(_model(), bad, _data(), TrainConfig(epochs=1), progress=False)

    def test_gradient_clipping_bounds_the_first_step(self):
        big = {"x": 100 * torch.ones(8, 4), "y": torch.zeros(8, 1)}
        model = _model()
        before = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
        cfg = TrainConfig(epochs=1, lr=1.0, batch_size=8, optimizer="sgd", schedule="constant", grad_clip=1e-3)
        fit(model, _loss, big, cfg, progress=False)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        assert (after - before).norm() <= 1e-3 * (1 + 1e-5)

    def test_snapshots_are_kept_when_asked(self):
        cfg = TrainConfig(epochs=4, snapshot_every=2)
        hist = fit(_model(), _loss, _data(), cfg, progress=False)
        assert sorted(hist.snapshots) == [2, 4]
        assert not torch.equal(hist.snapshots[2]["weight"], hist.snapshots[4]["weight"])

    def test_dataloader_input_works(self):
        d = _data()
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(d["x"], d["y"]), batch_size=16)
        hist = fit(_model(), lambda m, b: (m(b[0]) - b[1]).pow(2).mean(), loader, TrainConfig(epochs=2, lr=0.05),
                   progress=False)
        assert hist["train_loss"][1] < hist["train_loss"][0]

    def test_step_losses_are_recorded_per_epoch(self):
        cfg = TrainConfig(epochs=3, lr=0.1, batch_size=16)
        hist = fit(_model(), _loss, _data(), cfg, progress=False)
        assert [len(s) for s in hist["step_loss"]] == [4, 4, 4]  # 64 rows / 16
        for record in hist.records:
            assert record["train_loss"] == pytest.approx(sum(record["step_loss"]) / 4)
        assert "step_loss" not in hist.table().splitlines()[0]

    def test_max_steps_replays_the_start_of_the_full_run(self):
        cfg = TrainConfig(epochs=3, lr=0.1, batch_size=16, schedule="cosine", seed=2)
        full = fit(_model(), _loss, _data(), cfg, progress=False)
        steps = [v for s in full["step_loss"] for v in s]
        part = fit(_model(), _loss, _data(), cfg, progress=False, max_steps=6,
                   evaluate=lambda m: {"w0": m.weight[0, 0]})
        replayed = [v for s in part["step_loss"] for v in s]
        assert replayed == steps[:6]  # same schedule, same batches: bit-identical on a CPU
        assert part["epoch"] == [1, 2] and part["w0"] == part["w0"][:1]  # the partial epoch is not evaluated

    @pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
    def test_max_steps_must_be_a_positive_int(self, bad):
        with pytest.raises(ValueError, match="`max_steps`"):
            fit(_model(), _loss, _data(), TrainConfig(epochs=1), progress=False, max_steps=bad)

    def test_max_steps_cannot_be_checkpointed(self, tmp_path):
        with pytest.raises(ValueError, match="`max_steps`: a partial run cannot be checkpointed"):
            fit(_model(), _loss, _data(), TrainConfig(epochs=1), progress=False, max_steps=1,
                checkpoint_path=str(tmp_path / "x.pt"))

    def test_cfg_must_be_a_trainconfig(self):
        with pytest.raises(TypeError, match="`cfg`"):
            fit(_model(), _loss, _data(), {"epochs": 1})


class TestTrainOrLoad:
    def test_second_call_loads_without_training(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path))
        cfg = TrainConfig(epochs=2, lr=0.05, params={"width": 1})
        first = _model()
        h1 = train_or_load("lin", first, _loss, _data(), cfg, progress=False, verbose=False)
        calls = []
        second = _model(seed=9)
        h2 = train_or_load("lin", second, lambda m, b: calls.append(1), _data(), cfg, progress=False, verbose=False)
        assert not calls and h1.records == h2.records
        assert torch.equal(first.weight, second.weight)

    @pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not_a_dict"])
    def test_unreadable_cache_file_is_named_deleted_and_retrained(self, tmp_path, monkeypatch, damage):
        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path))
        cfg = TrainConfig(epochs=2, lr=0.05)
        reference = train_or_load("lin", _model(), _loss, _data(), cfg, progress=False, verbose=False)
        (path,) = (tmp_path / "checkpoints").glob("lin-*.pt")
        data = path.read_bytes()
        if damage == "not_a_dict":
            torch.save([1, 2, 3], path)
        else:
            path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x80not a checkpoint" * 20,
                              "empty": b""}[damage])
        calls = []

        def counting_loss(model, batch):
            calls.append(1)
            return _loss(model, batch)

        with pytest.warns(RuntimeWarning, match=rf"cached checkpoint '{path}' is unreadable .*training again"):
            history = train_or_load("lin", _model(), counting_loss, _data(), cfg, progress=False, verbose=False)
        assert len(calls) == cfg.epochs * 64 // cfg.batch_size  # every epoch trained afresh
        assert history["train_loss"] == reference["train_loss"]
        again = train_or_load("lin", _model(seed=5), lambda m, b: calls.append("x"), _data(), cfg,
                              progress=False, verbose=False)
        assert "x" not in calls and again.records == history.records  # the new file is a good cache

    def test_different_params_never_share_a_checkpoint(self):
        a = TrainConfig(params={"width": 1})
        b = TrainConfig(params={"width": 2})
        assert config_hash(a) != config_hash(b) and config_hash(a) == config_hash(TrainConfig(params={"width": 1}))

    def test_bad_name_is_an_error(self):
        with pytest.raises(ValueError, match="`name`"):
            train_or_load("a b", _model(), _loss, _data(), TrainConfig(epochs=1))


class TestTrainConfig:
    @pytest.mark.parametrize("kwargs, match", [
        ({"epochs": 0}, "`epochs`"), ({"lr": -1.0}, "`lr`"), ({"optimizer": "lbfgs"}, "`optimizer`"),
        ({"schedule": "step"}, "`schedule`"), ({"grad_clip": 0.0}, "`grad_clip`"), ({"batch_size": 0}, "`batch_size`"),
    ])
    def test_bad_values_are_errors(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**kwargs)

    @pytest.mark.parametrize("schedule, match", [
        (("cosine", 2, 2), "sum to 4, expected `epochs` = 3"), (("cosine", 3, 0), "positive int"),
        (("cosine",), "positive int"), (("step", 3), "`schedule\\[0\\]`"), ((), "positive int"),
        (("cosine", 1.5, 1.5), "positive int"), (("cosine", True, 2), "positive int"),
    ])
    def test_bad_segmented_schedules_are_errors(self, schedule, match):
        with pytest.raises(ValueError, match=match):
            TrainConfig(epochs=3, schedule=schedule)


class TestSchedules:
    """The learning-rate factor per step, as ``fit`` applies it (``_make_scheduler``)."""

    @staticmethod
    def factors(cfg, total_steps):
        from pixelbook.training import _make_scheduler

        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = _make_scheduler(opt, cfg, total_steps)
        out = []
        for _ in range(total_steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    def test_one_segment_is_the_plain_schedule(self):
        for name in ("cosine", "poly", "constant"):
            for warmup in (0, 3):
                plain = self.factors(TrainConfig(epochs=4, schedule=name, warmup_steps=warmup), 20)
                one = self.factors(TrainConfig(epochs=4, schedule=(name, 4), warmup_steps=warmup), 20)
                assert one == plain  # bit for bit

    def test_segments_restart_the_schedule_in_proportion_to_their_epochs(self):
        import math

        got = self.factors(TrainConfig(epochs=3, schedule=("cosine", 2, 1)), 12)  # 4 steps per epoch
        first = [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
        second = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
        assert got == pytest.approx(first + second, abs=1e-12)
        assert got[8] == 1.0 and got[7] < 0.05  # the restart and the end of the first decay

    def test_a_segmented_schedule_is_stored_as_a_tuple_and_hashes_like_one(self):
        a = TrainConfig(epochs=3, schedule=["cosine", 2, 1])
        assert a.schedule == ("cosine", 2, 1)
        assert config_hash(a) == config_hash(TrainConfig(epochs=3, schedule=("cosine", 2, 1)))
        assert config_hash(a) != config_hash(TrainConfig(epochs=3, schedule=("cosine", 1, 2)))


def test_iterate_batches_covers_every_row_once():
    data = {"a": torch.arange(10), "b": torch.arange(10) * 2}
    batches = list(iterate_batches(data, 3, shuffle=True, generator=torch.Generator().manual_seed(0)))
    seen = torch.cat([b["a"] for b in batches])
    assert sorted(seen.tolist()) == list(range(10)) and all(torch.equal(b["b"], 2 * b["a"]) for b in batches)
    with pytest.raises(ValueError, match="equal length"):
        list(iterate_batches({"a": torch.zeros(3), "b": torch.zeros(4)}, 2))


def test_history_table_lists_epochs():
    h = History([{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}])
    assert "train_loss" in h.table() and h.last["epoch"] == 2
