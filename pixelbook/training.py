"""Training: one loop for every chapter, a checkpoint cache, and exact resume.

``fit`` trains any model with any loss on any data; ``train_or_load`` wraps it in a cache keyed by
a hash of the configuration, so a notebook rerun loads instead of training, and an interrupted run
resumes from its last checkpoint with nothing lost (weights, optimiser, scheduler, history and the
random state all come back, so the resumed run equals the uninterrupted one bit for bit on a CPU).

The loss function sees the model and a batch and returns either a scalar tensor or a
``(loss, logs)`` pair, which lets a multi-task chapter log each head's term::

    def loss_fn(model, batch):
        out = model(batch["image"])
        return F.cross_entropy(out["seg"], batch["labels"]), {}

Several processes (``torchrun``, see :mod:`pixelbook.distributed`): when a process group of more
than one process exists, ``fit`` trains the same run with the same *global* batch, split across
the processes, and gives the same result as one process up to floating-point rounding (see
``fit``'s "Several processes" section for what holds exactly and what does not).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import math
import os
import random
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from ._checks import check_choice, check_int
from .runtime import cache_dir, resolve_device

__all__ = ["TrainConfig", "History", "fit", "train_or_load", "config_hash", "iterate_batches", "evaluate_batches"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; hashed into the checkpoint cache key.

    Attributes:
        epochs: passes over the training data.
        lr: peak learning rate.
        batch_size: used when ``train_data`` is a dict of tensors.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9).
        weight_decay: L2 / decoupled weight decay.
        schedule: ``"constant"``, ``"cosine"`` or ``"poly"`` (the thesis' ``(1 - t)^0.9``), per step;
            or ``(name, e_1, ..., e_k)``: that schedule restarted at the start of each segment of
            ``e_i`` epochs (the ``e_i`` sum to ``epochs``), e.g. one decay per stage of a staged
            run. Warm-up, if any, belongs to the first segment.
        warmup_steps: linear warm-up steps before the schedule.
        grad_clip: max global gradient norm, or ``None`` for no clipping.
        seed: seeds the initial weights (through the caller) and the batch order.
        eval_every: evaluate every this many epochs (and always after the last).
        snapshot_every: keep a CPU copy of the weights every this many epochs (0 = never); used by
            widgets that scrub through training.
        params: free-form, JSON-serialisable description of the model and data (widths, dataset
            size, loss weights, ...). It changes nothing in ``fit`` but is part of the cache key,
            so two runs that differ anywhere never share a checkpoint.
    """

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 8
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str | tuple = "cosine"
    warmup_steps: int = 0
    grad_clip: float | None = None
    seed: int = 0
    eval_every: int = 1
    snapshot_every: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        check_choice(self.optimizer, "optimizer", ("adam", "adamw", "sgd"))
        if isinstance(self.schedule, (tuple, list)):
            name, segments = (self.schedule[0], tuple(self.schedule[1:])) if self.schedule else (None, ())
            if not isinstance(name, str) or not segments or not all(
                    isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in segments):
                raise ValueError("`schedule`: expected a name or (name, epochs, ...) with positive int epochs, "
                                 f"got {self.schedule!r}")
            check_choice(name, "schedule[0]", ("constant", "cosine", "poly"))
            if sum(segments) != self.epochs:
                raise ValueError(f"`schedule`: its segments {segments} sum to {sum(segments)}, "
                                 f"expected `epochs` = {self.epochs}")
            object.__setattr__(self, "schedule", (name, *segments))
        else:
            check_choice(self.schedule, "schedule", ("constant", "cosine", "poly"))
        if self.epochs < 1:
            raise ValueError(f"`epochs`: expected >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"`batch_size`: expected >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"`lr`: expected a positive finite number, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"`grad_clip`: expected None or > 0, got {self.grad_clip}")
        try:
            json.dumps(dict(self.params), sort_keys=True, default=str)
        except TypeError as exc:  # pragma: no cover - default=str makes almost anything work
            raise ValueError(f"`params`: expected JSON-serialisable values ({exc})") from exc


def config_hash(*objects: Any, length: int = 12) -> str:
    """A short, stable hash of configurations (dataclasses, dicts, numbers, strings).

    Includes the pixelbook version, so a new release never loads an old release's checkpoint.
    """
    from . import __version__

    def plain(o):
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return {"__type__": type(o).__name__, **{k: plain(v) for k, v in dataclasses.asdict(o).items()}}
        if isinstance(o, Mapping):
            return {str(k): plain(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [plain(v) for v in o]
        if isinstance(o, float):
            return repr(o)
        return o

    text = json.dumps([__version__, [plain(o) for o in objects]], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass
class History:
    """Per-epoch records (``train_loss``, each logged term, each evaluation metric, ``time``).

    Each record also holds ``step_loss``, the list of the loss at every optimisation step of that
    epoch (before the step's update). Results files keep it, and their replay test reruns the
    first steps and compares (see :func:`pixelbook.experiments.replay`).
    """

    records: list[dict] = field(default_factory=list)
    snapshots: dict[int, dict] = field(default_factory=dict)  # epoch -> CPU state_dict

    def __getitem__(self, key: str) -> list:
        """``history["miou"]`` -> the values of ``miou`` over the epochs that logged it."""
        return [r[key] for r in self.records if key in r]

    def __len__(self):
        return len(self.records)

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}

    def table(self, keys: Iterable[str] | None = None, fmt: str = ".4g") -> str:
        """The history as a plain-text table, one row per epoch."""
        if keys is None:  # the scalar columns; per-step lists such as ``step_loss`` are left out
            keys = list(dict.fromkeys(k for r in self.records for k, v in r.items() if not isinstance(v, list)))
        keys = list(keys)
        rows = [" ".join(f"{k:>12}" for k in keys)]
        for r in self.records:
            rows.append(" ".join(f"{format(r[k], fmt) if isinstance(r.get(k), float) else str(r.get(k, '')):>12}" for k in keys))
        return "\n".join(rows)


def iterate_batches(data: Mapping[str, torch.Tensor], batch_size: int, shuffle: bool = False,
                    generator: torch.Generator | None = None):
    """Yield dict batches from a dict of equally long tensors (the small-scale data format)."""
    lengths = {k: len(v) for k, v in data.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"`data`: expected tensors of equal length, got {lengths}")
    n = next(iter(lengths.values()))
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield {k: v[idx] for k, v in data.items()}


def _to_device(batch, device):
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


@torch.no_grad()
def evaluate_batches(model: nn.Module, data, fn: Callable, batch_size: int = 16, device=None) -> list:
    """Run ``fn(model, batch)`` over ``data`` in eval mode and return the list of results."""
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        it = iterate_batches(data, batch_size) if isinstance(data, Mapping) else data
        return [fn(model, _to_device(b, device)) for b in it]
    finally:
        model.train(was_training)


def _make_optimizer(model, cfg):
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def _make_scheduler(opt, cfg, total_steps):
    if isinstance(cfg.schedule, str):
        name, starts, lengths = cfg.schedule, [0], [total_steps]
    else:  # (name, e_1, ..., e_k): restart at each segment; its steps in proportion to its epochs
        name, segments = cfg.schedule[0], cfg.schedule[1:]
        ends = [total_steps * sum(segments[:i + 1]) // cfg.epochs for i in range(len(segments))]
        starts, lengths = [0, *ends[:-1]], [e - s for s, e in zip([0, *ends[:-1]], ends)]

    def factor(step):
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        i = bisect.bisect_right(starts, step) - 1  # the segment of this step
        first = cfg.warmup_steps if i == 0 else 0
        t = min(1.0, (step - starts[i] - first) / max(1, lengths[i] - first))
        if name == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t))
        if name == "poly":  # thesis §3.5: lr * (1 - iter/maxiter)^0.9
            return (1 - t) ** 0.9
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _rng_state():
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s):
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _atomic_save(obj, path):
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# Several processes (DDP) and gradient accumulation
# ----------------------------------------------------------------------------------------------


def _batch_len(batch) -> int:
    """The number of samples of a batch (the leading size of its first tensor)."""
    if torch.is_tensor(batch):
        return len(batch)
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for v in values:
        n = _batch_len(v)
        if n >= 0:
            return n
    return -1


def _take(batch, index):
    """The samples ``index`` (a slice or index tensor) of a batch: tensors, dicts, lists and tuples of them."""
    if torch.is_tensor(batch):
        return batch[index]
    if isinstance(batch, Mapping):
        return {k: _take(v, index) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_take(v, index) for v in batch)
    return batch


def _global_batches(data: Mapping[str, torch.Tensor], batch_size: int, generator: torch.Generator):
    """The index tensors of an epoch's batches, drawn exactly as :func:`iterate_batches` draws them."""
    n = len(next(iter(data.values())))
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def _shares(batches, rank: int, world: int, is_dict_index: bool, data=None):
    """``(share, n_share, n_global)`` per global batch: this process's contiguous piece of it.

    A process whose piece is empty (a last batch with fewer samples than processes) gets the
    batch's first sample as a stand-in that it trains on with weight 0, so that it still joins the
    gradient all-reduce of the step.
    """
    from .distributed import shard_slice

    for batch in batches:
        n_global = len(batch) if is_dict_index else _batch_len(batch)
        if n_global < 1:
            raise ValueError(f"`train_data`: to split a batch over processes or micro-batches, a batch must be a "
                             f"tensor or a dict/list/tuple of tensors with a batch dimension, got {type(batch).__name__}")
        s = shard_slice(n_global, rank, world)
        n_share = s.stop - s.start
        if n_share == 0:
            s = slice(0, 1)
        piece = batch[s] if is_dict_index else _take(batch, s)
        if is_dict_index:
            piece = {k: v[piece] for k, v in data.items()}
        yield piece, n_share, n_global


def _ddp_class():
    """``DistributedDataParallel`` that answers for its module's attributes too (built on first use).

    A chapter's ``loss_fn(model, batch)`` may read or call the model's own attributes
    (``model.net``, ``model.advance()``); they are looked up on the wrapped module. Calls through
    ``model(...)`` go through DDP's forward, which is what gradient synchronisation needs.
    """
    from torch.nn.parallel import DistributedDataParallel

    class _DDP(DistributedDataParallel):
        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.module, name)

    return _DDP


def _wrap_ddp(model: nn.Module, device: torch.device, sync_batchnorm: bool | None, find_unused_parameters: bool):
    """The model in DDP (with SyncBatchNorm on CUDA); returns it and the BatchNorm layers to put back."""
    from torch.nn.modules.batchnorm import _BatchNorm

    norms = [(name, m) for name, m in model.named_modules() if name and isinstance(m, _BatchNorm)]
    if sync_batchnorm is None:
        sync_batchnorm = device.type == "cuda"
    if sync_batchnorm and norms:
        if device.type != "cuda":
            raise ValueError(f"`sync_batchnorm`: PyTorch's SyncBatchNorm runs on CUDA only, this run is on {device}; "
                             "pass sync_batchnorm=False (each process then normalises its own share of the batch)")
        _to_sync_batchnorm(model)
    elif norms:
        norms = []
        if _dist_rank() == 0:  # once, not once per process
            warnings.warn(f"fit: {type(model).__name__} has BatchNorm layers and several processes train it on "
                          f"{device} without SyncBatchNorm (CUDA only): each process normalises with the statistics "
                          "of its own share of the batch, so the run differs from a one-process run by more than "
                          "rounding", RuntimeWarning, stacklevel=3)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return _ddp_class()(model, device_ids=ids, find_unused_parameters=find_unused_parameters), norms


def _to_sync_batchnorm(model: nn.Module) -> None:
    """Replace the BatchNorm layers inside ``model`` by SyncBatchNorm, in place.

    The new layers share the old ones' parameters and running statistics (the same tensors), so
    the optimiser trains both and :func:`_unwrap_batchnorm` can put the old layers back.
    """
    nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _unwrap_batchnorm(model: nn.Module, norms) -> None:
    """Put the original BatchNorm layers back (they share their tensors with the SyncBatchNorm ones)."""
    for name, module in norms:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, module)


def _accumulated_step(net, loss_fn, share, n_share: int, n_global: int, micro: int | None, device,
                      world: int, epoch: int, step: int, ddp: bool):
    """Forward and backward passes of one step's share, in micro-batches; returns the step's loss and logs.

    Each micro-batch's loss is weighted by its share of the global batch, ``n_micro / n_global``
    (times ``world``, which DDP's gradient average divides out), so the accumulated gradient, once
    averaged over the processes, is the gradient of the mean loss over the global batch. Only the
    last micro-batch synchronises gradients (DDP's ``no_sync`` for the others). The returned loss
    and logs are those weighted sums added over the processes: the global batch's mean loss.
    """
    parts = ([(share, 0.0)] if n_share == 0 else
             [(_take(share, slice(i, min(i + (micro or n_share), n_share))),
               (min(i + (micro or n_share), n_share) - i) / n_global) for i in range(0, n_share, micro or n_share)])
    loss_sum, logs_sum = 0.0, {}
    for i, (part, w) in enumerate(parts):
        with net.no_sync() if ddp and i < len(parts) - 1 else nullcontext():
            out = loss_fn(net, _to_device(part, device))
            loss, logs = out if isinstance(out, tuple) else (out, {})
            if not torch.isfinite(loss):
                where = f" in process {_dist_rank()}" if ddp else ""
                raise FloatingPointError(
                    f"non-finite loss {loss.item()} at epoch {epoch}, step {step}{where}: lower `lr`, "
                    f"set `grad_clip`, or check the inputs of this batch")
            (loss * (w * world)).backward()
        loss_sum += w * float(loss.detach())
        for k, v in logs.items():
            logs_sum[k] = logs_sum.get(k, 0.0) + w * float(v.detach() if torch.is_tensor(v) else v)
    if ddp:
        import torch.distributed as dist

        keys = sorted(logs_sum)
        on = device if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor([loss_sum] + [logs_sum[k] for k in keys], dtype=torch.float64, device=on)
        dist.all_reduce(t)
        values = t.tolist()
        loss_sum, logs_sum = values[0], dict(zip(keys, values[1:]))
    return loss_sum, logs_sum


def _dist_rank() -> int:
    from .distributed import rank

    return rank()


def _read_checkpoint(path: str, device, ddp: bool):
    """The checkpoint at ``path`` (``None`` if there is none); under DDP read by rank 0 and broadcast."""
    if not ddp:
        return torch.load(path, map_location=device, weights_only=False) if os.path.exists(path) else None
    from . import distributed

    state = None
    if distributed.is_main() and os.path.exists(path):
        state = torch.load(path, map_location="cpu", weights_only=False)
    return distributed.broadcast_object(state)


def fit(model: nn.Module, loss_fn: Callable, train_data, cfg: TrainConfig, *,
        evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
        device=None, checkpoint_path: str | None = None, progress: bool | None = None,
        desc: str = "train", callback: Callable[[int, History], None] | None = None,
        max_steps: int | None = None, micro_batch_size: int | None = None,
        sync_batchnorm: bool | None = None, find_unused_parameters: bool = False) -> History:
    """Train ``model`` for ``cfg.epochs`` epochs and return its :class:`History`.

    Args:
        model: any ``nn.Module``; moved to ``device``.
        loss_fn: ``loss_fn(model, batch) -> loss`` or ``-> (loss, logs)`` where ``logs`` maps names
            to floats (e.g. each head's term), averaged over the epoch into the history.
        train_data: a dict of equally long tensors (shuffled each epoch with a generator seeded by
            ``cfg.seed`` and the epoch, so the order survives a resume), or any re-iterable of
            batches such as a ``DataLoader``.
        cfg: the :class:`TrainConfig`.
        evaluate: ``evaluate(model) -> {metric: value}``, run in eval mode under ``no_grad`` every
            ``cfg.eval_every`` epochs and after the last.
        checkpoint_path: if given, the full state is saved there after every epoch, and an existing
            checkpoint with the same configuration hash is resumed from.
        progress: show a ``tqdm.auto`` bar (one bar per run, updated per step). ``None`` shows it
            unless the environment sets ``PIXELBOOK_PROGRESS=0`` (the render command does, so
            committed notebooks carry no progress-bar output).
        callback: ``callback(epoch, history)`` after each epoch (e.g. to stop early by raising).
        max_steps: stop after this many optimisation steps, with the learning-rate schedule of the
            whole run: the first ``max_steps`` steps are exactly those of the full run. For
            replaying the start of a recorded run; it is not part of ``cfg`` (a replay has the
            run's configuration) and cannot be combined with ``checkpoint_path``. The last,
            partial epoch is recorded without evaluation.
        micro_batch_size: at most this many samples per forward pass in each process; a larger
            share of the batch is split into micro-batches whose gradients are accumulated before
            the step (for a GPU whose memory does not hold the batch). ``None``: one forward pass
            per process and step. Not part of ``cfg``: it changes the arithmetic's rounding, not
            the run (but see BatchNorm below).
        sync_batchnorm: with several processes, make BatchNorm layers use the statistics of the
            whole batch across processes (``nn.SyncBatchNorm``, CUDA only); ``None``: on CUDA.
            The model's own BatchNorm layers are back in place when ``fit`` returns.
        find_unused_parameters: passed to ``DistributedDataParallel`` (for models some of whose
            parameters get no gradient in a step).

    Several processes:
        When a ``torch.distributed`` process group of ``W > 1`` processes exists (``torchrun``;
        :func:`pixelbook.distributed.setup`), ``model`` is wrapped in ``DistributedDataParallel``
        and every step uses the same *global* batch of ``cfg.batch_size`` samples as one process
        would (the same shuffled order, seeded by ``cfg.seed`` and the epoch). Process ``r`` takes
        the ``r``-th of ``W`` contiguous pieces of the batch (sizes differ by at most one when
        ``W`` does not divide the batch; a process whose piece is empty — a last batch smaller
        than ``W`` — trains on a stand-in sample with weight 0). Each piece's loss is weighted by
        its share of the batch, so the averaged gradient is the gradient of the batch's mean loss,
        whatever ``W`` and ``micro_batch_size`` are, and the step equals the one-process step up to
        rounding. This holds exactly when the loss is a mean over samples of per-sample terms of
        equal weight. It does not hold exactly (as for any gradient accumulation) when

        - the loss weights samples unequally (a mean over the valid pixels of the whole batch,
          with ``ignore_index`` pixels unevenly spread): each piece is weighted by its sample count;
        - the model couples samples: BatchNorm in training mode (``sync_batchnorm`` restores the
          global-batch statistics on CUDA when there is no accumulation; on CPUs each process uses
          its piece's statistics, with a warning), or layers that draw random numbers per sample
          (dropout draws other masks);
        - ``loss_fn`` counts its calls (a schedule by step): it is called once per micro-batch.

        The history's step losses and logs are those of the global batch (added over the
        processes); ``evaluate`` and ``callback`` run in every process (an ``evaluate`` written
        with :func:`pixelbook.distributed.evaluate_metrics` shares its work and is still exact;
        one that is not repeats the same computation in each process). Only rank 0 shows the
        progress bar, keeps snapshots and writes the checkpoint; a checkpoint is read by rank 0
        and sent to the others, with every process's random state, so a killed multi-process run
        resumes (with the same or another number of processes).

    Raises:
        FloatingPointError: when the loss becomes NaN/Inf, naming the epoch and step.
        ValueError: when a checkpoint at ``checkpoint_path`` belongs to another configuration.
    """
    from tqdm.auto import tqdm

    from . import distributed

    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"`cfg`: expected a TrainConfig, got {type(cfg).__name__}")
    if max_steps is not None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise ValueError(f"`max_steps`: expected None or an int >= 1, got {max_steps!r}")
        if checkpoint_path:
            raise ValueError("`max_steps`: a partial run cannot be checkpointed; pass checkpoint_path=None")
    if micro_batch_size is not None:
        micro_batch_size = check_int(micro_batch_size, "micro_batch_size", low=1)
    world, rank = distributed.world_size(), distributed.rank()
    ddp = world > 1
    accumulate = ddp or micro_batch_size is not None
    if progress is None:
        progress = os.environ.get("PIXELBOOK_PROGRESS", "1") != "0"
    progress = progress and rank == 0
    device = resolve_device(device)
    model.to(device)
    is_dict = isinstance(train_data, Mapping)
    steps_per_epoch = (math.ceil(len(next(iter(train_data.values()))) / cfg.batch_size) if is_dict
                       else len(train_data))
    if steps_per_epoch == 0:
        raise ValueError("`train_data`: expected at least one batch, got an empty dataset")
    opt = _make_optimizer(model, cfg)
    sched = _make_scheduler(opt, cfg, cfg.epochs * steps_per_epoch)
    history, start_epoch, key = History(), 0, config_hash(cfg)

    state = _read_checkpoint(checkpoint_path, device, ddp) if checkpoint_path else None
    if state is not None:
        if state.get("key") != key:
            raise ValueError(f"`checkpoint_path`: {checkpoint_path} holds a run with another configuration "
                             f"(hash {state.get('key')}, expected {key}); delete it or choose another path")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = History(state["history"], state.get("snapshots", {}))
        start_epoch = state["epoch"]
        ranks = state.get("rng_ranks")
        _set_rng_state(ranks[rank] if ranks and len(ranks) == world else state["rng"])
        del state

    net, norms = _wrap_ddp(model, device, sync_batchnorm, find_unused_parameters) if ddp else (model, [])
    total_steps = cfg.epochs * steps_per_epoch if max_steps is None else min(max_steps, cfg.epochs * steps_per_epoch)
    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, desc=desc,
               disable=not progress, leave=False, mininterval=1.0)
    steps_done = start_epoch * steps_per_epoch
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if max_steps is not None and steps_done >= max_steps:
                break
            net.train()
            t0, total, count, logs_sum, step_losses = time.time(), 0.0, 0, {}, []
            if is_dict:
                gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
                batches = (_shares(_global_batches(train_data, cfg.batch_size, gen), rank, world, True, train_data)
                           if accumulate else iterate_batches(train_data, cfg.batch_size, shuffle=True, generator=gen))
            else:
                batches = _shares(train_data, rank, world, False) if accumulate else train_data
            for step, batch in enumerate(batches):
                if max_steps is not None and steps_done >= max_steps:
                    break
                if accumulate:  # several processes and/or micro-batches: the weighted pieces of the batch
                    opt.zero_grad(set_to_none=True)
                    step_loss, logs = _accumulated_step(net, loss_fn, *batch, micro_batch_size, device, world,
                                                        epoch, step, ddp)
                else:
                    out = loss_fn(model, _to_device(batch, device))
                    loss, logs = out if isinstance(out, tuple) else (out, {})
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"non-finite loss {loss.item()} at epoch {epoch}, step {step}: lower `lr`, "
                            f"set `grad_clip`, or check the inputs of this batch")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    step_loss = None
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                step_losses.append(float(loss.detach()) if step_loss is None else step_loss)
                total += step_losses[-1]
                count += 1
                steps_done += 1
                for k, v in logs.items():
                    logs_sum[k] = logs_sum.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.4g}", refresh=False)
            record = {"epoch": epoch + 1, "train_loss": total / max(count, 1),
                      **{k: v / max(count, 1) for k, v in logs_sum.items()}}
            partial = count < steps_per_epoch  # only when max_steps stopped the epoch
            if evaluate is not None and not partial and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                model.eval()
                with torch.no_grad():
                    record.update({k: float(v) for k, v in evaluate(model).items()})
                net.train()
            record["time"] = time.time() - t0
            record["step_loss"] = step_losses
            history.records.append(record)
            if cfg.snapshot_every and (epoch + 1) % cfg.snapshot_every == 0 and rank == 0:
                history.snapshots[epoch + 1] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if checkpoint_path:
                extra = {"rng_ranks": distributed.all_gather_object(_rng_state()), "world_size": world} if ddp else {}
                if rank == 0:
                    _atomic_save({"key": key, "config": dataclasses.asdict(cfg), "epoch": epoch + 1,
                                  "model": model.state_dict(), "optimizer": opt.state_dict(),
                                  "scheduler": sched.state_dict(), "history": history.records,
                                  "snapshots": history.snapshots, "rng": _rng_state(), **extra}, checkpoint_path)
            if callback is not None:
                callback(epoch + 1, history)
    finally:
        bar.close()
        _unwrap_batchnorm(model, norms)
    model.eval()
    return history


def _read_cached_checkpoint(path: str, name: str) -> dict | None:
    """The checkpoint dict at ``path``; ``None`` if the file cannot be read as one (truncated by a
    full disk or a killed kernel, or garbage): then it is deleted with a warning naming it, and
    the caller trains again, since the cache only ever holds what training can recreate."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict):
            raise TypeError(f"expected a checkpoint dict, got {type(state).__name__}")
        return state
    except Exception as exc:  # torch.load raises RuntimeError, UnpicklingError, EOFError, ... on damage
        reason = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"train_or_load({name!r}): the cached checkpoint '{path}' is unreadable "
                      f"({reason[:200]}); deleted it, training again", RuntimeWarning, stacklevel=3)
        os.remove(path)
        return None


def train_or_load(name: str, model: nn.Module, loss_fn: Callable, train_data, cfg: TrainConfig, *,
                  retrain: bool = False, verbose: bool = True, **fit_kwargs) -> History:
    """Train ``model`` unless a finished run with the same ``name`` and configuration is cached.

    The cache file is ``<cache>/checkpoints/<name>-<hash(cfg)>.pt`` (``PIXELBOOK_CACHE`` sets
    ``<cache>``). A finished run is loaded into ``model`` in place; an unfinished one (the kernel
    died, the user pressed stop) resumes from its last epoch. ``retrain=True`` starts afresh. A
    cache file that cannot be read (truncated, garbage) is deleted with a ``RuntimeWarning``
    naming it, and the run is trained again.

    Returns the :class:`History` (loaded or new). Other keyword arguments go to :func:`fit`.
    """
    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"`name`: expected a short identifier without spaces or slashes, got {name!r}")
    path = os.path.join(cache_dir("checkpoints"), f"{name}-{config_hash(cfg)}.pt")
    if retrain and os.path.exists(path):
        os.remove(path)
    state = _read_cached_checkpoint(path, name) if os.path.exists(path) else None
    if state is not None and state.get("epoch") == cfg.epochs and state.get("key") == config_hash(cfg):
        device = resolve_device(fit_kwargs.get("device"))
        model.load_state_dict(state["model"])
        model.to(device).eval()
        if verbose:
            print(f"loaded {name} ({cfg.epochs} epochs) from the cache: {os.path.basename(path)}")
        return History(state["history"], state.get("snapshots", {}))
    if verbose and os.path.exists(path):
        print(f"resuming {name} from its last checkpoint")
    return fit(model, loss_fn, train_data, cfg, checkpoint_path=path, desc=name, **fit_kwargs)
