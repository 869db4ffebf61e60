"""Several processes (issue 16): torchrun + gloo on CPUs, checked against one process.

The multi-process tests (marked ``ddp``) start real ``torchrun`` runs (``python -m
torch.distributed.run``, 2 processes of 1 thread each) of ``tests/ddp_tiny.py``, a float64
experiment whose batch is split unevenly over the processes, and of
``tests/ddp_metrics_worker.py``. Select them with ``-m ddp``; they take about a minute on 2 cores.

Tolerance of "the same" (fixed before the first run): the tiny runs are float64, with SGD (a step
is linear in the gradient, so rounding differences are not amplified as Adam's normalisation can
amplify them for near-zero gradients). Splitting a batch sums the same terms in another order,
which changes a float64 result by a few ulps (2.2e-16 relative each); over the run's 15 steps this
stays orders of magnitude below ``TOL = 1e-10`` (absolute on weights of order 0.1-1, relative on
losses and metrics). A logic error — a piece of the batch weighted by 1/W instead of its share
(4/7 vs 3/7 here), a sample seen twice or skipped, another shuffle — changes the first step's
gradient by several percent and the weights by far more than 1e-6. A resumed run on the same
number of processes must equal the uninterrupted one exactly (deterministic sums on a CPU).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from pixelbook import distributed, run
from pixelbook.training import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TINY = "ddp_tiny:EXPERIMENT"
TOL = 1e-10


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _env(cache: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in distributed.TORCHRUN_VARIABLES}
    env.update(PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]),
               PIXELBOOK_CACHE=str(cache), PIXELBOOK_PROGRESS="0", OMP_NUM_THREADS="1", **extra)
    return env


def _torchrun(nproc: int, module_args: list[str], env: dict, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           *module_args]
    return subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **popen)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants, as a crash would. torchrun starts each worker in a session
    of its own, so killing torchrun's process group does not reach them; their parent ids do (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _run_tiny(tmp: Path, nproc: int, *extra: str, hold: int | None = None, cache: Path | None = None):
    """A torchrun run of the tiny experiment; returns (returncode, output, results root, weights dir)."""
    root, weights = tmp / "results", tmp / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    env = _env(cache or tmp / "cache", DDP_TINY_WEIGHTS=str(weights),
               **({"DDP_TINY_HOLD_AT_STEP": str(hold)} if hold else {}))
    proc = _torchrun(nproc, ["-m", "pixelbook.run", TINY, "--scale", "smoke", "--device", "cpu", "--results",
                             str(root), *extra], env)
    return proc, root, weights


def _record(root: Path) -> dict:
    return json.loads((root / "97_ddp_tiny" / "smoke-net-seed0.json").read_text())


def _weights(folder: Path, rank: int = 0) -> dict:
    return torch.load(folder / f"weights-rank{rank}.pt", map_location="cpu", weights_only=True)


def _max_weight_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _max_rel_diff(a, b) -> float:
    return max(abs(x - y) / max(abs(x), 1e-300) if x != y else 0.0 for x, y in zip(a, b))


def _step_losses(record: dict) -> list[float]:
    return [v for r in record["history"] for v in r["step_loss"]]


# ----------------------------------------------------------------------------------------------
# One process: the pieces (fast, no subprocess)
# ----------------------------------------------------------------------------------------------


class TestShardSlice:
    @pytest.mark.parametrize("n", [0, 1, 2, 7, 29, 30])
    @pytest.mark.parametrize("world", [1, 2, 3, 8])
    def test_shares_tile_the_range_in_order_and_differ_by_at_most_one(self, n, world):
        shares = [distributed.shard_slice(n, r, world) for r in range(world)]
        assert [i for s in shares for i in range(n)[s]] == list(range(n))
        sizes = [s.stop - s.start for s in shares]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)

    def test_bad_arguments_are_errors(self):
        with pytest.raises(ValueError, match="`rank_`/`world`"):
            distributed.shard_slice(4, 2, 2)
        with pytest.raises(ValueError, match="`n`"):
            distributed.shard_slice(-1, 0, 1)


class TestSetup:
    def test_without_torchrun_joins_nothing(self):
        ctx = distributed.setup("cpu", env={})
        assert (ctx.rank, ctx.world_size, ctx.backend, str(ctx.device)) == (0, 1, None, "cpu")
        assert distributed.world_size() == 1 and distributed.is_main() and not distributed.is_distributed()
        assert distributed.broadcast_object({"a": 1}) == {"a": 1} and distributed.all_gather_object(3) == [3]

    def test_world_size_one_joins_nothing(self):
        env = dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="x", MASTER_PORT="1")
        assert distributed.setup("cpu", env=env).backend is None and distributed.world_size() == 1

    @pytest.mark.parametrize("env, match", [
        (dict(RANK="0"), "incomplete torchrun environment: RANK set but WORLD_SIZE, LOCAL_RANK"),
        (dict(RANK="2", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2", MASTER_ADDR="h", MASTER_PORT="1"),
         "RANK=2 must be below WORLD_SIZE=2"),
        (dict(RANK="0", WORLD_SIZE="two", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2", MASTER_ADDR="h", MASTER_PORT="1"),
         "WORLD_SIZE: expected an integer, got 'two'"),
        (dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="4", MASTER_ADDR="h", MASTER_PORT="1"),
         "LOCAL_WORLD_SIZE=4 exceeds WORLD_SIZE=2"),
    ])
    def test_inconsistent_environment_is_an_error_naming_the_variable(self, env, match):
        with pytest.raises(ValueError, match=match):
            distributed.setup("cpu", env=env)

    def test_nccl_on_cpu_and_unknown_backend_are_errors(self):
        env = dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2", MASTER_ADDR="h", MASTER_PORT="1")
        with pytest.raises(ValueError, match="NCCL exchanges CUDA tensors only"):
            distributed.setup("cpu", backend="nccl", env=env)
        with pytest.raises(ValueError, match="`backend`: expected one of"):
            distributed.setup("cpu", backend="mpi", env=env)
        assert distributed.world_size() == 1  # nothing was joined

    @pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
    def test_cuda_without_cuda_is_an_error(self):
        env = dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2", MASTER_ADDR="h", MASTER_PORT="1")
        with pytest.raises(ValueError, match="CUDA is not available"):
            distributed.setup("cuda", env=env)


class TestBadFlags:
    @pytest.mark.parametrize("argv, match", [
        ([TINY, "--micro-batch", "0"], "--micro-batch: expected an integer >= 1, got 0"),
        ([TINY, "--backend", "mpi"], "argument --backend: invalid choice: 'mpi'"),
        (["nowhere_module:EXPERIMENT"], "chapter: cannot load 'nowhere_module:EXPERIMENT'"),
        (["ddp_tiny:TinyNet"], "chapter: 'ddp_tiny:TinyNet' is a type, expected a pixelbook.experiments.Experiment"),
    ])
    def test_exit_2_with_a_message(self, argv, match, capsys, tmp_path):
        with pytest.raises(SystemExit) as exc:
            run.main([*argv, "--scale", "smoke", "--results", str(tmp_path)])
        assert exc.value.code == 2
        assert match in capsys.readouterr().err

    def test_incomplete_torchrun_environment_exits_2(self, capsys, tmp_path, monkeypatch):
        monkeypatch.setenv("WORLD_SIZE", "2")
        with pytest.raises(SystemExit) as exc:
            run.main([TINY, "--scale", "smoke", "--results", str(tmp_path)])
        assert exc.value.code == 2
        assert "incomplete torchrun environment: WORLD_SIZE set but RANK" in capsys.readouterr().err


def test_micro_batches_in_one_process_equal_the_whole_batch():
    """Gradient accumulation: 7-sample batches in micro-batches of 2 (2+2+2+1) give the same run."""
    import ddp_tiny

    exp = ddp_tiny.EXPERIMENT
    config = exp.run_config("net", 0, "smoke")
    runs = []
    for micro in (None, 2):
        data, model, loss_fn = exp._prepare(config)
        h = fit(model, loss_fn, data["train"], exp._train_config(config), device="cpu", progress=False,
                micro_batch_size=micro)
        runs.append(([v for r in h.records for v in r["step_loss"]], model.state_dict(), h.records[-1]["ce"]))
    (losses_a, w_a, ce_a), (losses_b, w_b, ce_b) = runs
    assert len(losses_a) == len(losses_b) == 15
    assert _max_rel_diff(losses_a, losses_b) <= TOL and abs(ce_a - ce_b) <= TOL * abs(ce_a)
    assert _max_weight_diff(w_a, w_b) <= TOL


def test_the_tolerance_detects_pieces_weighted_equally():
    """The check can fail: averaging the two pieces' mean losses (4 and 3 samples of 7, as plain DDP
    with a per-process mean would) instead of weighting them 4/7 and 3/7 moves the weights by far more than TOL."""
    import ddp_tiny

    exp = ddp_tiny.EXPERIMENT
    config = exp.run_config("net", 0, "smoke")
    weights = []
    for naive in (False, True):
        data, model, loss_fn = exp._prepare(config)

        def equal_pieces(m, b, _loss=loss_fn):  # fit weights a piece n/7; make it 1/2 for the pieces 4 and 3
            loss, logs = _loss(m, b)
            return loss * {4: 7 / 8, 3: 7 / 6}.get(len(b["image"]), 1.0), logs

        fit(model, equal_pieces if naive else loss_fn, data["train"], exp._train_config(config), device="cpu",
            progress=False, micro_batch_size=4)
        weights.append(model.state_dict())
    assert _max_weight_diff(*weights) > 1e4 * TOL


def test_micro_batches_of_a_list_of_batches_equal_the_whole_batches():
    """The other data format (any re-iterable of batches, e.g. a DataLoader): tuples of tensors, split too."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(23, 3, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    batches = [(x[i:i + 5], y[i:i + 5]) for i in range(0, 23, 5)]  # 5, 5, 5, 5, 3
    cfg = TrainConfig(epochs=2, lr=0.05, optimizer="sgd", batch_size=5)
    runs = []
    for micro in (None, 2):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1).double()
        h = fit(model, lambda m, b: (m(b[0]) - b[1]).pow(2).mean(), batches, cfg, progress=False, micro_batch_size=micro)
        runs.append(([v for r in h.records for v in r["step_loss"]], model.state_dict()))
    assert _max_rel_diff(runs[0][0], runs[1][0]) <= TOL and _max_weight_diff(runs[0][1], runs[1][1]) <= TOL
    with pytest.raises(ValueError, match="`train_data`: to split a batch over processes or micro-batches"):
        fit(torch.nn.Linear(3, 1), lambda m, b: m(x.float()).sum(), [["no tensor"]], cfg, progress=False,
            micro_batch_size=2)


def test_sync_batchnorm_layers_share_the_tensors_and_are_put_back():
    """What fit does on GPUs, checked on the CPU: SyncBatchNorm in, training updates the model's own
    BatchNorm tensors, and the original layers are back afterwards (SyncBatchNorm's forward needs CUDA)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    from pixelbook.training import _to_sync_batchnorm, _unwrap_batchnorm

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4)))
    norms = [(n, m) for n, m in model.named_modules() if n and isinstance(m, _BatchNorm)]
    before = {n: (m.weight, m.running_mean) for n, m in norms}
    _to_sync_batchnorm(model)
    synced = dict(model.named_modules())
    assert all(type(synced[n]) is torch.nn.SyncBatchNorm for n in before)
    assert all(synced[n].weight is w and synced[n].running_mean is r for n, (w, r) in before.items())
    _unwrap_batchnorm(model, norms)
    assert [type(m) for m in model.modules()].count(torch.nn.SyncBatchNorm) == 0
    assert all(dict(model.named_modules())[n] is m for n, m in norms)


def test_sync_batchnorm_on_cpu_is_refused():
    from pixelbook.training import _wrap_ddp

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="`sync_batchnorm`: PyTorch's SyncBatchNorm runs on CUDA only"):
        _wrap_ddp(model, torch.device("cpu"), True, False)


def test_batchnorm_warning_comes_from_rank_0_only(monkeypatch):
    """Without SyncBatchNorm (CPUs) fit warns that BatchNorm sees each process's share, once per run:
    process 0 warns, the others do not (checked in a one-process gloo group, the rank faked)."""
    import torch.distributed as dist

    from pixelbook import training

    def bn_model():
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))

    assert not dist.is_initialized()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.warns(RuntimeWarning, match="without SyncBatchNorm"):
            _, norms = training._wrap_ddp(bn_model(), torch.device("cpu"), None, False)
        assert norms == []  # nothing to put back: the layers were not converted
        monkeypatch.setattr(training, "_dist_rank", lambda: 1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            training._wrap_ddp(bn_model(), torch.device("cpu"), None, False)
    finally:
        dist.destroy_process_group()


def test_micro_batch_size_is_checked():
    model = torch.nn.Linear(2, 1)
    data = {"x": torch.zeros(4, 2)}
    with pytest.raises(ValueError, match="`micro_batch_size`: expected an integer in \\[1, inf\\], got 0"):
        fit(model, lambda m, b: m(b["x"]).sum(), data, TrainConfig(epochs=1), micro_batch_size=0, progress=False)


# ----------------------------------------------------------------------------------------------
# Several processes: real torchrun runs (gloo)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The tiny experiment in one process (no torchrun), with its results file and trained weights."""
    tmp = tmp_path_factory.mktemp("one")
    root, weights = tmp / "results", tmp / "weights"
    weights.mkdir()
    saved = {k: os.environ.get(k) for k in ("DDP_TINY_WEIGHTS", "PIXELBOOK_CACHE")}
    os.environ.update(DDP_TINY_WEIGHTS=str(weights), PIXELBOOK_CACHE=str(tmp / "cache"))  # no stale checkpoint
    try:
        t0 = time.time()
        assert run.main([TINY, "--scale", "smoke", "--device", "cpu", "--results", str(root)]) == 0
        wall = time.time() - t0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return _record(root), _weights(weights), wall


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The same run under ``torchrun --nproc-per-node=2``."""
    tmp = tmp_path_factory.mktemp("two")
    t0 = time.time()
    proc, root, weights = _run_tiny(tmp, 2)
    code, out = _finish(proc)
    assert code == 0, out[-4000:]
    return _record(root), weights, out, time.time() - t0


@pytest.mark.ddp
@pytest.mark.slow
class TestTwoProcesses:
    def test_same_weights_losses_and_metrics_as_one_process(self, one_process, two_processes):
        rec1, w1, wall1 = one_process
        rec2, weights2, out, wall2 = two_processes
        w2 = _weights(weights2, 0)
        assert _max_weight_diff(w2, _weights(weights2, 1)) == 0.0  # DDP keeps the processes' weights identical
        dw = _max_weight_diff(w1, w2)
        dl = _max_rel_diff(_step_losses(rec1), _step_losses(rec2))
        dm = _max_rel_diff([rec1["metrics"][k] for k in sorted(rec1["metrics"])],
                           [rec2["metrics"][k] for k in sorted(rec2["metrics"])])
        print(f"2 vs 1 process: max |weight diff| {dw:.3g}, max rel step-loss diff {dl:.3g}, "
              f"max rel metric diff {dm:.3g}; wall {wall2:.1f} s (torchrun, 2 x 1 thread) vs {wall1:.1f} s "
              f"(in-process, {torch.get_num_threads()} threads)")
        assert sorted(rec1["metrics"]) == sorted(rec2["metrics"]) and len(_step_losses(rec2)) == 15
        assert dw <= TOL and dl <= TOL and dm <= TOL
        assert rec1["config_hash"] == rec2["config_hash"]  # the world size is not part of the run's identity
        for key in ("ce", "l1", "train_loss"):  # logs are the global batch's, added over the processes
            assert _max_rel_diff([r[key] for r in rec1["history"]], [r[key] for r in rec2["history"]]) <= TOL

    def test_provenance_records_the_world_size(self, one_process, two_processes):
        rec1, rec2 = one_process[0], two_processes[0]
        assert rec1["provenance"]["world_size"] == 1 and "distributed" not in rec1["provenance"]
        p = rec2["provenance"]
        assert p["world_size"] == 2
        assert p["distributed"] == {"backend": "gloo", "nodes": 1, "local_world_size": 2, "micro_batch_size": None}
        assert p["command"].startswith("torchrun --nproc-per-node=2 -m pixelbook.run ddp_tiny:EXPERIMENT")

    def test_only_rank_0_prints(self, two_processes):
        out = two_processes[2]
        assert out.count("1 run(s) at scale smoke: 1 to run") == 1 and out.count("wrote ") == 1
        assert "2 processes (gloo, cpu)" in out

    def test_micro_batches_in_two_processes_equal_one_process(self, one_process, tmp_path):
        """Each process's share (4 or 3 samples) in micro-batches of 2, accumulated without sync."""
        proc, root, weights = _run_tiny(tmp_path, 2, "--micro-batch", "2")
        code, out = _finish(proc)
        assert code == 0, out[-4000:]
        rec = _record(root)
        dw, dl = _max_weight_diff(one_process[1], _weights(weights)), _max_rel_diff(_step_losses(one_process[0]),
                                                                                    _step_losses(rec))
        print(f"2 processes, micro-batch 2 vs 1 process: max |weight diff| {dw:.3g}, max rel step-loss diff {dl:.3g}")
        assert dw <= TOL and dl <= TOL and rec["provenance"]["distributed"]["micro_batch_size"] == 2

    def test_killed_after_an_epoch_resumes_to_the_same_run(self, two_processes, tmp_path):
        cache = tmp_path / "cache"
        # The loss blocks at its 6th call: the first step of epoch 2 (5 steps per epoch), after epoch 1's checkpoint.
        proc, root, weights = _run_tiny(tmp_path, 2, hold=6, cache=cache)
        ckpts = cache / "runs" / "97_ddp_tiny"
        deadline = time.time() + 240
        while not any(ckpts.glob("*.pt")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        ckpt = next(ckpts.glob("*.pt"), None)
        if ckpt is None:
            _kill_tree(proc.pid)
            pytest.fail(f"no checkpoint appeared: {proc.communicate(timeout=60)[0][-3000:]}")
        time.sleep(1.0)  # both processes are now blocked in epoch 2; the checkpoint holds epoch 1
        assert torch.load(ckpt, weights_only=False)["epoch"] == 1
        _kill_tree(proc.pid)  # torchrun and both workers, as a crash or `kill -9` would
        proc.communicate(timeout=60)
        assert not (root / "97_ddp_tiny").exists()  # nothing was written

        proc, root, weights = _run_tiny(tmp_path, 2, cache=cache)
        code, out = _finish(proc)
        assert code == 0, out[-4000:]
        rec, rec_full = _record(root), two_processes[0]
        assert rec["provenance"]["resumed"] is True and rec_full["provenance"]["resumed"] is False
        assert len(rec["history"]) == 3 and _step_losses(rec) == _step_losses(rec_full)
        assert rec["metrics"] == rec_full["metrics"]
        assert _max_weight_diff(_weights(weights), _weights(two_processes[1])) == 0.0
        assert not any(ckpts.glob("*.pt"))  # deleted once the results file is written

    def test_metric_states_are_added_over_processes(self, tmp_path):
        """Stateful metrics on uneven parts (3 + 5 images) equal the metrics of the union in one process."""
        path = tmp_path / "metrics.json"
        proc = _torchrun(2, [str(TESTS / "ddp_metrics_worker.py"), str(path)], _env(tmp_path / "cache"))
        code, out = _finish(proc)
        assert code == 0, out[-4000:]
        res = json.loads(path.read_text())
        r0, r1 = res["per_rank"]
        assert r0 == r1  # every process gets the reduced value
        single, functional = res["single"], res["functional"]
        assert r0.keys() == single.keys()
        exact = {"miou", "acc"}  # from int64 confusion-matrix counts: the same operations on the same numbers
        for k, v in r0.items():
            if k in exact:
                assert v == single[k] == functional[k], k
            else:  # float64 sums added in another order
                assert math.isclose(v, single[k], rel_tol=1e-12, abs_tol=1e-15), (k, v, single[k])
        for k, v in functional.items():
            if k == "normals.median":  # read from a 0.01-degree histogram: exact to half a bin
                assert abs(r0[k] - v) <= 0.005 + 1e-9
            elif k in r0:
                assert math.isclose(r0[k], v, rel_tol=1e-9, abs_tol=1e-12), (k, r0[k], v)
        assert {"depth.abs_rel", "depth.d1", "normals.mean", "saliency.max_f", "saliency.mae"} <= r0.keys()

    def test_inconsistent_setup_under_torchrun_fails_clearly(self, tmp_path):
        proc = _torchrun(2, ["-m", "pixelbook.run", TINY, "--scale", "smoke", "--device", "cpu", "--backend", "nccl",
                             "--results", str(tmp_path)], _env(tmp_path / "cache"))
        code, out = _finish(proc, timeout=120)
        assert code != 0
        assert "`backend`: NCCL exchanges CUDA tensors only; this run is on cpu" in out
