"""Several processes, one run: torchrun's environment, the process group, sharding, exact metrics.

pixelbook has no launcher of its own. ``torchrun`` starts the processes and tells each one who it
is through environment variables; :func:`setup` reads them, picks the device and the backend (NCCL
on GPUs, gloo on CPUs) and joins the process group. Everything else is ordinary code that asks
:func:`world_size` and :func:`rank`::

    torchrun --nproc-per-node=4 -m pixelbook.run 01_pixel_level_prediction --scale full

With no torchrun variables set (a notebook, ``python -m pixelbook.run``), :func:`setup` joins
nothing, :func:`world_size` is 1, and every function here is a no-op or the identity, so the
one-process code path is exactly the code path of a run without this module.

What the processes share and how (the rest of the package relies on it):

- **Training** (:func:`pixelbook.training.fit`): each optimisation step uses the *global* batch of
  the configuration; process ``r`` of ``W`` takes the ``r``-th of ``W`` contiguous pieces of it
  (:func:`shard_slice`) and gradients are averaged by ``DistributedDataParallel``, weighted so
  that the step equals the one-process step (see ``fit``).
- **Evaluation**: :func:`evaluate_metrics` gives each process a contiguous shard of the held-out
  data and feeds ``torchmetrics.Metric`` objects whose states are *sums*; ``compute()`` adds the
  states of all processes before dividing, so a mean IoU is the mean IoU of the union of the data,
  not an average of per-process means. An experiment whose ``evaluate`` does not use it simply
  runs the same evaluation in every process (the same number, computed ``W`` times).
- **Files**: only rank 0 writes (checkpoints, results, progress bars, logs); a checkpoint is read
  by rank 0 and broadcast (:func:`broadcast_object`), so a run on several machines resumes without
  a shared file system.

Environment variables read (set by torchrun): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import torch

from .runtime import resolve_device

__all__ = ["DistContext", "TORCHRUN_VARIABLES", "setup", "teardown", "is_distributed", "world_size", "rank",
           "is_main", "barrier", "broadcast_object", "all_gather_object", "main_first", "shard_slice", "shard",
           "evaluate_metrics", "torchrun_command"]

#: The variables torchrun sets in every process it starts, and that :func:`setup` needs.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

#: How long a collective waits for the other processes before failing (``init_process_group``'s
#: ``timeout``). ours: a full-scale run's first download (NYUv2, 2.8 GB) happens on rank 0 while the
#: others wait at a barrier, so the default of 10 minutes (NCCL) is too short on a slow connection.
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistContext:
    """Who this process is: what :func:`setup` returns.

    Attributes:
        rank, world_size: this process's global rank and the number of processes (1: not distributed).
        local_rank, local_world_size: the same on this machine.
        device: the device this process trains on (``cuda:<local_rank>`` on a multi-GPU machine).
        backend: ``"nccl"``, ``"gloo"``, or ``None`` when no process group was joined.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def nodes(self) -> int:
        """Machines in the run, assuming each runs ``local_world_size`` processes (torchrun's default)."""
        return max(1, self.world_size // max(1, self.local_world_size))

    def as_provenance(self) -> dict:
        """JSON-ready description for results files."""
        return {"world_size": self.world_size, "local_world_size": self.local_world_size, "nodes": self.nodes,
                "backend": self.backend}


def _env_int(name: str, env: Mapping[str, str]) -> int:
    text = env[name]
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}: expected an integer, got {text!r}") from None
    if value < 0:
        raise ValueError(f"environment variable {name}: expected >= 0, got {value}")
    return value


def _read_env(env: Mapping[str, str]) -> dict | None:
    """The torchrun variables as ints, ``None`` if none is set; errors for a partial or inconsistent set."""
    present = [v for v in TORCHRUN_VARIABLES if v in env]
    if not present:
        return None
    missing = [v for v in TORCHRUN_VARIABLES if v not in env]
    if missing:
        raise ValueError(
            f"incomplete torchrun environment: {', '.join(present)} set but {', '.join(missing)} missing. Start "
            "several processes with `torchrun --nproc-per-node=N -m pixelbook.run ...`, or unset these variables "
            "to run in one process")
    r, w = _env_int("RANK", env), _env_int("WORLD_SIZE", env)
    lr, lw = _env_int("LOCAL_RANK", env), _env_int("LOCAL_WORLD_SIZE", env)
    if w < 1 or lw < 1:
        raise ValueError(f"torchrun environment: WORLD_SIZE={w} and LOCAL_WORLD_SIZE={lw} must be >= 1")
    if not r < w:
        raise ValueError(f"torchrun environment: RANK={r} must be below WORLD_SIZE={w}")
    if not lr < lw:
        raise ValueError(f"torchrun environment: LOCAL_RANK={lr} must be below LOCAL_WORLD_SIZE={lw}")
    if lw > w:
        raise ValueError(f"torchrun environment: LOCAL_WORLD_SIZE={lw} exceeds WORLD_SIZE={w}")
    return {"rank": r, "world_size": w, "local_rank": lr, "local_world_size": lw}


def _resolve_device(device, local_rank: int, local_world_size: int, world: int) -> torch.device:
    """The device of one process of ``world``; on CUDA, ``cuda:<local_rank>``."""
    name = str(device) if device is not None else "auto"
    dev = resolve_device(name)  # "auto" -> cuda, mps or cpu; an unavailable device is an error
    if world == 1:
        return dev
    if dev.type == "cuda":
        if dev.index is not None and name != "auto":
            raise ValueError(f"`device`: {name!r} names one GPU, but under torchrun each of the {world} processes "
                             "uses the GPU of its LOCAL_RANK; pass --device cuda (or auto)")
        count = torch.cuda.device_count()
        if local_world_size > count:
            raise ValueError(f"`device`: {local_world_size} processes on this machine (--nproc-per-node) but only "
                             f"{count} GPU(s); start at most {count}, or use --device cpu")
        return torch.device("cuda", local_rank)
    if dev.type == "mps":
        raise ValueError("`device`: several processes cannot share Apple's MPS device (DDP has no backend for it); "
                         "use one process, or --device cpu")
    return dev


def setup(device="auto", backend: str = "auto", env: Mapping[str, str] | None = None) -> DistContext:
    """Join the process group described by torchrun's environment variables (or none) and pick the device.

    Args:
        device: ``"auto"`` (CUDA if available, else CPU), ``"cuda"``, ``"cpu"``; under torchrun a
            CUDA process uses ``cuda:<LOCAL_RANK>`` (set as the current device), so a single GPU
            name such as ``"cuda:1"`` is an error there.
        backend: ``"auto"`` (NCCL for CUDA, gloo for CPU), ``"nccl"`` or ``"gloo"``.
        env: the environment (default ``os.environ``); for tests.

    Returns:
        The :class:`DistContext`. With ``WORLD_SIZE=1`` or no torchrun variables no group is joined.

    Raises:
        ValueError: an incomplete or inconsistent torchrun environment, a device this machine does
            not have, more processes on a machine than GPUs, or a backend that cannot drive the
            device (NCCL on CPU tensors, NCCL not built in).
    """
    import torch.distributed as dist

    env = os.environ if env is None else env
    if backend not in ("auto", "nccl", "gloo"):
        raise ValueError(f"`backend`: expected one of ('auto', 'nccl', 'gloo'), got {backend!r}")
    info = _read_env(env)
    if info is None or info["world_size"] == 1:
        info = info or {"rank": 0, "world_size": 1, "local_rank": 0, "local_world_size": 1}
        return DistContext(**info, device=_resolve_device(device, 0, 1, 1), backend=None)
    dev = _resolve_device(device, info["local_rank"], info["local_world_size"], info["world_size"])
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError(f"`backend`: NCCL exchanges CUDA tensors only; this run is on {dev}. Use --backend gloo "
                         "(or auto) on CPUs")
    if not dist.is_available():
        raise ValueError("`backend`: this PyTorch build has no torch.distributed")
    if backend == "nccl" and not dist.is_nccl_available():
        raise ValueError("`backend`: this PyTorch build has no NCCL; use --backend gloo")
    if backend == "gloo" and not dist.is_gloo_available():
        raise ValueError("`backend`: this PyTorch build has no gloo; use --backend nccl on GPUs")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=info["rank"], world_size=info["world_size"],
                                timeout=TIMEOUT)
    return DistContext(**info, device=dev, backend=backend)


def teardown() -> None:
    """Leave the process group (if joined); what a script calls before it exits."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether this process belongs to a joined process group of more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """The number of processes of the run (1 when not distributed)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (nothing when not distributed)."""
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (any picklable object) in every process; ``obj`` itself when not distributed."""
    if not is_distributed():
        return obj
    import torch.distributed as dist

    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` in every process; ``[obj]`` when not distributed."""
    if not is_distributed():
        return [obj]
    import torch.distributed as dist

    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the body in rank 0 first, then in each machine's local rank 0, then in the other processes.

    For work that writes a shared cache, such as downloading a data set: rank 0 downloads it; with a
    file system shared by the machines the others find it there, without one each machine's first
    process downloads its own copy; never do two processes write the same file at once. No-op
    when not distributed.
    """
    if not is_distributed():
        yield
        return
    local = int(os.environ.get("LOCAL_RANK", rank()))
    phase = 0 if rank() == 0 else (1 if local == 0 else 2)
    for p in range(3):
        if p == phase:
            yield
        barrier()


def shard_slice(n: int, rank_: int | None = None, world: int | None = None) -> slice:
    """The contiguous share of ``range(n)`` that process ``rank_`` of ``world`` takes.

    The ``world`` shares tile ``range(n)`` in rank order; their sizes differ by at most one (the
    first ``n % world`` shares are one longer), and a share is empty when ``n < world``. This is
    how :func:`pixelbook.training.fit` splits each global batch and how :func:`evaluate_metrics`
    splits the held-out data. Unlike ``torch.utils.data.DistributedSampler``, nothing is repeated to
    even the shares out, so every sample counts exactly once.

    Example:
        >>> [shard_slice(10, r, 3) for r in range(3)]
        [slice(0, 4, None), slice(4, 7, None), slice(7, 10, None)]
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if not (isinstance(n, int) and n >= 0):
        raise ValueError(f"`n`: expected an int >= 0, got {n!r}")
    if not (isinstance(world, int) and world >= 1 and isinstance(rank_, int) and 0 <= rank_ < world):
        raise ValueError(f"`rank_`/`world`: expected 0 <= rank < world, got rank {rank_!r} of {world!r}")
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return slice(start, start + base + (1 if rank_ < extra else 0))


def shard(data: Mapping[str, torch.Tensor], rank_: int | None = None, world: int | None = None) -> dict:
    """This process's contiguous share (:func:`shard_slice`) of a dict of equally long tensors."""
    lengths = {k: len(v) for k, v in data.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"`data`: expected tensors of equal length, got {lengths}")
    s = shard_slice(next(iter(lengths.values())), rank_, world)
    return {k: v[s] for k, v in data.items()}


@torch.no_grad()
def evaluate_metrics(model, data: Mapping[str, torch.Tensor], metrics: Mapping[str, Any],
                     update: Callable[[Any, dict, Mapping[str, Any]], None], batch_size: int = 16,
                     device=None) -> dict:
    """Evaluate ``model`` on ``data`` through stateful metrics, sharded over the processes; exact.

    Each process takes its contiguous shard of ``data`` (:func:`shard`), runs
    ``update(model, batch, metrics)`` on it batch by batch in eval mode (``update`` calls the
    metrics' ``update``), and then every metric's ``compute()`` adds the states of all processes
    before dividing (torchmetrics synchronises the states when a process group exists; the states of
    :mod:`pixelbook.metrics`' classes are sums). The result is the metric of the whole data set —
    the same as one process gives, up to the rounding of float64 sums — whatever the number of
    processes. The metrics are reset afterwards.

    Args:
        model: the network (``None`` for a baseline that ``update`` handles by itself).
        data: dict of equally long tensors (the held-out set), on any device.
        metrics: name -> ``torchmetrics.Metric`` (moved to ``device``).
        update: ``update(model, batch, metrics)``; ``batch`` is on ``device``.
        batch_size: images per forward pass.
        device: default: the model's device (CPU without a model).

    Returns:
        ``{name: metric.compute()}`` (tensors or dicts of tensors, as the metric returns).
    """
    from .training import _to_device, iterate_batches

    if device is None:
        device = next(model.parameters()).device if model is not None else torch.device("cpu")
    device = torch.device(device)
    was_training = getattr(model, "training", False)
    if model is not None:
        model.eval()
    try:
        for m in metrics.values():
            m.to(device)
            m.reset()
        part = shard(data)
        if len(next(iter(part.values()))):
            for batch in iterate_batches(part, batch_size):
                update(model, _to_device(batch, device), metrics)
        out = {name: m.compute() for name, m in metrics.items()}
    finally:
        for m in metrics.values():
            m.reset()
        if model is not None:
            model.train(was_training)
    return out


def torchrun_command(ctx: DistContext) -> str:
    """The ``torchrun`` prefix that starts a run like this one (for the provenance of results files)."""
    if ctx.world_size == 1:
        return "python"
    nodes = f" --nnodes={ctx.nodes}" if ctx.nodes > 1 else ""
    return f"torchrun{nodes} --nproc-per-node={ctx.local_world_size}"
