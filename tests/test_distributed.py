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
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out


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


def test_micro_batch_size_is_checked():
    model = torch.nn.Linear(2, 1)
    data = {"x": torch.zeros(4, 2)}
    with pytest.raises(ValueError, match="`micro_batch_size`: expected an integer in \\[1, inf\\], got 0"):
        fit(model, lambda m, b: m(b["x"]).sum(), data, TrainConfig(epochs=1), micro_batch_size=0, progress=False)
