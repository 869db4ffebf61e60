"""The machinery every chapter experiment shares: configs, runs, results files and replays.

A chapter's experiment is a subclass of :class:`Experiment` in its own module of
:mod:`pixelbook.experiments`, instantiated once as ``EXPERIMENT``. It declares

- ``arms``: the :class:`Arm` s compared (a name, a description, free parameters);
- ``seeds``: the seeds per scale (``medium``: at least 3);
- ``claims``: the :class:`pixelbook.results.Claim` s, written before the experiment runs;

and implements five methods, each a function of the run's :class:`RunConfig` only:

- ``config(arm, seed, scale)``: the frozen, hashed description of one run (training, data, model,
  loss and evaluation parameters), built with :meth:`Experiment.make_config`;
- ``data(config)``: the data (a dict; ``data["train"]`` is what :func:`pixelbook.training.fit`
  trains on), cached in memory between arms that describe it the same way;
- ``model(config, data)``: a fresh network, built right after :func:`pixelbook.runtime.seed_all`
  with the run's seed, so its initial weights depend on nothing else;
- ``loss(config)``: ``loss_fn(model, batch)`` as :func:`pixelbook.training.fit` wants it;
- ``evaluate(config, model, data)``: a flat ``{"task.metric": float}`` dict on held-out data
  (``model`` is ``None`` for an arm without training, e.g. a trivial baseline).

Everything else is here: :meth:`Experiment.run` (used by the notebook, with the checkpoint cache),
:func:`record_run` (used by ``python -m pixelbook.run``: trains afresh, resumes an interrupted run,
writes the results file atomically) and :func:`replay` (reruns the first steps of a recorded run and
compares the losses, so a results file can only come from running the code).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .. import distributed as _distributed
from .. import results as _results
from .._checks import check_choice
from ..results import Claim, canonical_json, claims_hash, stable_hash
from ..runtime import SCALES, cache_dir, env_info, resolve_device, seed_all
from ..training import History, TrainConfig, _atomic_save, config_hash, fit, train_or_load

__all__ = ["Arm", "RunConfig", "Run", "Experiment", "ReplayOutcome", "record_run", "result_status", "replay",
           "REPLAY_RTOL", "REPLAY_ATOL"]

#: Tolerance of :func:`replay` (relative, then absolute, per step loss), which runs with the
#: recording's thread count. Measured on Chapter 1's first epoch (60 Adam steps of the multi-task
#: network, 2-core CPU): with the recording's 2 threads the replay is bit-identical (difference 0,
#: twice). With 1 or 4 threads the reductions inside the convolutions are summed in another order:
#: step 1 differs by 8e-8 (float32 rounding), but training is chaotic and the difference grows to
#: 1e-3 by step 10 and 1e-2 by step 60 — as large as what a 1 % change of the learning rate does
#: (2.5e-4 at step 2, 1.5e-3 at step 10), so no tolerance could tell the two apart: the replay pins
#: the thread count instead. 1e-5 is 100 times float32 rounding and 25 times below the smallest
#: change of the configuration we measured (another seed moves step 1 by 0.2).
REPLAY_RTOL = 1e-5
REPLAY_ATOL = 1e-7


@dataclass(frozen=True)
class Arm:
    """One arm of an experiment: a name (an identifier), what it is, and its parameters.

    ``params`` is free-form; :meth:`Experiment.config` reads it to build the arm's run
    configuration, which is what is hashed (so two arms with the same configuration are the same run).
    """

    name: str
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier() or not self.name.islower():
            raise ValueError(f"`name`: expected a lower-case identifier such as 'depth_l2', got {self.name!r}")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides one run of one arm with one seed; its :attr:`hash` names the run.

    Attributes:
        chapter, arm, seed, scale: which run this is.
        train: the :class:`pixelbook.training.TrainConfig` (its ``seed`` must equal ``seed``), or
            ``None`` for an arm that is evaluated without training.
        data, model, loss, eval: JSON-serialisable descriptions, read by the experiment's
            methods. Put every number a method uses here, not in a module constant, so that a
            change is a change of the hash (and so of the committed results, which then fail their test).
    """

    chapter: str
    arm: str
    seed: int
    scale: str
    train: TrainConfig | None
    data: Mapping[str, Any] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)
    loss: Mapping[str, Any] = field(default_factory=dict)
    eval: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        check_choice(self.scale, "scale", SCALES)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"`seed`: expected an int, got {type(self.seed).__name__}")
        if self.train is not None:
            if not isinstance(self.train, TrainConfig):
                raise TypeError(f"`train`: expected a TrainConfig or None, got {type(self.train).__name__}")
            if self.train.seed != self.seed:
                raise ValueError(f"`train`: its seed ({self.train.seed}) must be the run's seed ({self.seed})")
        canonical_json(self)  # raises TypeError naming a value that cannot be hashed

    @property
    def hash(self) -> str:
        """:func:`pixelbook.results.stable_hash` of the whole config (not of the package version)."""
        return stable_hash(self)

    def to_dict(self) -> dict:
        """The config as plain JSON data (as results files store it; floats stay numbers)."""
        return _results.plain_data(self)


@dataclass
class Run:
    """What :meth:`Experiment.run` returns: the trained model, its history and its metrics.

    Attributes:
        config: the :class:`RunConfig`.
        model: the trained network (``None`` for an arm without training).
        history: the :class:`pixelbook.training.History` (empty without training).
        metrics: ``{"task.metric": value}`` from the experiment's ``evaluate``.
        data: the data the run used (``data["val"]`` etc., for figures).
        train_time_s: seconds spent training in this process (0 when loaded from the cache).
        eval_time_s: seconds spent in ``evaluate``.
        resumed: whether training resumed from a checkpoint of an interrupted run.
    """

    config: RunConfig
    model: nn.Module | None
    history: History
    metrics: dict[str, float]
    data: Any
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    resumed: bool = False


def _flat_metrics(metrics, where: str) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{where}: expected a dict of metrics, got {type(metrics).__name__}")
    out = {}
    for k, v in metrics.items():
        if not isinstance(k, str):
            raise TypeError(f"{where}: metric names must be strings, got {k!r}")
        if torch.is_tensor(v):
            if v.numel() != 1:
                raise TypeError(f"{where}: metric {k!r} must be a scalar, got a tensor of shape {tuple(v.shape)}")
            v = v.item()
        elif hasattr(v, "item") and callable(v.item):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{where}: metric {k!r} must be a number, got {type(v).__name__}")
        out[k] = float(v)
    return out


class Experiment:
    """Base class of a chapter's experiment (see the module docstring for what to implement).

    Class attributes to set: ``chapter`` (the notebook stem), ``title``, ``arms``, ``seeds``,
    ``claims``; optionally ``replay_arm`` (default: the first arm that trains) and
    ``replay_steps`` (default: the whole first epoch).
    """

    chapter: str = ""
    title: str = ""
    arms: tuple[Arm, ...] = ()
    seeds: Mapping[str, tuple[int, ...]] = {}
    claims: tuple[Claim, ...] = ()
    #: Claims about one arm against a threshold (e.g. :class:`pixelbook.experiments.meanshift.WithinArmClaim`):
    #: objects with ``id``, ``arm``, ``n`` and ``hashed()``; the claims hash covers them too.
    within_arm_claims: tuple = ()
    replay_arm: str | None = None
    replay_steps: int | None = None
    #: Arms a scale does not run, with the reason: ``{"full": {"std_post": "the softmax arm records
    #: its read-outs"}}`` (an arm that only reads out another arm's network, too costly to retrain).
    skip_arms: Mapping[str, Mapping[str, str]] = {}

    def __init__(self):
        self._data_key: str | None = None
        self._data_value: Any = None
        self.validate()

    # -- to implement in a chapter ------------------------------------------------------------

    def config(self, arm: Arm, seed: int, scale: str) -> RunConfig:  # pragma: no cover - abstract
        raise NotImplementedError

    def data(self, config: RunConfig):  # pragma: no cover - abstract
        raise NotImplementedError

    def model(self, config: RunConfig, data) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, config: RunConfig) -> Callable:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, config: RunConfig, model: nn.Module | None, data) -> Mapping[str, float]:  # pragma: no cover
        raise NotImplementedError

    def monitor(self, config: RunConfig, data) -> Callable[[nn.Module], Mapping[str, float]] | None:
        """Optional per-epoch metrics for the history (``fit``'s ``evaluate``); default none."""
        return None

    def shared_prefix(self, config: RunConfig) -> tuple[Mapping, int] | None:
        """The first epochs this run has in common with runs of other arms; default ``None`` (none).

        Return ``(key, epochs)`` when the run's first ``epochs`` epochs are, bit for bit, the same
        computation in every run whose ``key`` (JSON data: the config without the fields those epochs
        do not read) is equal, e.g. a dense stage that several gated arms start from.
        :func:`record_run` then trains those epochs once: the first such run keeps its state after
        them, and the others start from it (see there). A chapter that declares a prefix tests that
        a run started from it equals the run trained whole.
        """
        return None

    # -- provided -----------------------------------------------------------------------------

    @property
    def number(self) -> str:
        """The chapter number: ``"1"`` for ``01_pixel_level_prediction``."""
        head = self.chapter.split("_", 1)[0]
        return str(int(head)) if head.isdigit() else self.chapter

    def validate(self) -> None:
        """Check the declarations: unique arms, seeds per scale, claims that name real arms and seeds.

        Raises:
            ValueError: naming the declaration that is wrong.
        """
        name = type(self).__name__
        if not self.chapter:
            raise ValueError(f"{name}: set `chapter` to the notebook stem, e.g. '01_pixel_level_prediction'")
        arm_names = [a.name for a in self.arms]
        if not arm_names or len(set(arm_names)) != len(arm_names):
            raise ValueError(f"{name}: `arms` must be non-empty with unique names, got {arm_names}")
        for scale, seeds in self.seeds.items():
            check_choice(scale, "seeds", SCALES)
            if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
                raise ValueError(f"{name}: `seeds[{scale!r}]` must be distinct ints, got {seeds!r}")
        ids = [c.id for c in self.claims] + [c.id for c in self.within_arm_claims]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{name}: claim ids must be unique, got {ids}")
        for c in self.within_arm_claims:
            if c.arm not in arm_names:
                raise ValueError(f"{name}: within-arm claim {c.id!r} names arm {c.arm!r}, which is not one of {arm_names}")
            have = len(self.seeds.get("medium", ()))
            if c.n != have:
                raise ValueError(f"{name}: within-arm claim {c.id!r} is evaluated on n={c.n} seeds, but the experiment "
                                 f"runs {have} at scale 'medium'")
        for c in self.claims:
            for arm in (c.arm_a, c.arm_b):
                if arm not in arm_names:
                    raise ValueError(f"{name}: claim {c.id!r} names arm {arm!r}, which is not one of {arm_names}")
            have = len(self.seeds.get(c.scale, ()))
            if c.n != have:
                raise ValueError(f"{name}: claim {c.id!r} is evaluated on n={c.n} seeds, but the experiment runs "
                                 f"{have} at scale {c.scale!r} ({self.seeds.get(c.scale)})")
        for scale, skipped in self.skip_arms.items():
            check_choice(scale, "skip_arms", SCALES)
            unknown = sorted(set(skipped) - set(arm_names))
            if unknown or set(skipped) >= set(arm_names):
                raise ValueError(f"{name}: `skip_arms[{scale!r}]` must name some (not all) of {arm_names}, "
                                 f"got {sorted(skipped)}")
        if self.replay_arm is not None and self.replay_arm not in arm_names:
            raise ValueError(f"{name}: `replay_arm` {self.replay_arm!r} is not one of {arm_names}")

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise ValueError(f"`arm`: expected one of {[a.name for a in self.arms]} for {self.chapter}, got {name!r}")

    def arms_for(self, scale: str) -> tuple[Arm, ...]:
        """The arms run at ``scale``: all of them but those in ``skip_arms[scale]``."""
        check_choice(scale, "scale", SCALES)
        skipped = self.skip_arms.get(scale, {})
        return tuple(a for a in self.arms if a.name not in skipped)

    def seeds_for(self, scale: str) -> tuple[int, ...]:
        check_choice(scale, "scale", SCALES)
        if scale not in self.seeds:
            raise ValueError(f"`scale`: {self.chapter} has no {scale!r} seeds; it runs at {sorted(self.seeds)}")
        return tuple(self.seeds[scale])

    def claims_hash(self) -> str:
        """The hash of what decides the claims, recorded in every results file.

        :func:`pixelbook.results.claims_hash` of :attr:`claims` when there are no
        :attr:`within_arm_claims` (so the hashes already recorded by such chapters stay what they
        were); otherwise a hash of that and of every within-arm claim's ``hashed()`` fields.
        """
        h = claims_hash(self.claims)
        if not self.within_arm_claims:
            return h
        within = sorted((c.hashed() for c in self.within_arm_claims), key=lambda d: d["id"])
        return stable_hash({"claims": h, "within_arm_claims": within})

    def make_config(self, arm: Arm, seed: int, scale: str, *, train: TrainConfig | None, data=None, model=None,
                    loss=None, eval=None) -> RunConfig:  # noqa: A002 - `eval` mirrors RunConfig.eval
        """Build the :class:`RunConfig` of ``arm``/``seed``/``scale`` (for use in :meth:`config`)."""
        return RunConfig(self.chapter, arm.name, seed, scale, train, dict(data or {}), dict(model or {}),
                         dict(loss or {}), dict(eval or {}))

    def run_config(self, arm: str, seed: int, scale: str, overrides: Mapping[str, Mapping] | None = None) -> RunConfig:
        """``config(arm, seed, scale)``, checked to describe exactly that run.

        Args:
            overrides: for notebooks and exercises, changes to the config, by section:
                ``{"data": {"dataset": "nyuv2"}, "loss": {"gamma": 1.0}, "train": {"epochs": 4}}``
                (``data``/``model``/``loss``/``eval`` entries are merged, ``train`` fields replaced).
                They enter the hash, so a changed run never shares a checkpoint with the original;
                results files are always written without overrides.

        Raises:
            ValueError: the experiment's ``config`` describes another run, or an override names
                an unknown section or ``TrainConfig`` field.
        """
        check_choice(scale, "scale", SCALES)
        cfg = self.config(self.arm(arm), seed, scale)
        if not isinstance(cfg, RunConfig):
            raise TypeError(f"{type(self).__name__}.config: expected a RunConfig, got {type(cfg).__name__}")
        got, want = (cfg.chapter, cfg.arm, cfg.seed, cfg.scale), (self.chapter, arm, seed, scale)
        if got != want:
            raise ValueError(f"{type(self).__name__}.config: returned the config of {got}, expected {want} "
                             "(build it with self.make_config(arm, seed, scale, ...))")
        for section, changes in (overrides or {}).items():
            check_choice(section, "overrides", ("train", "data", "model", "loss", "eval"))
            if section == "train":
                if cfg.train is None:
                    raise ValueError(f"`overrides`: arm {arm!r} does not train; it has no 'train' section")
                fields = {f.name for f in dataclasses.fields(TrainConfig)}
                unknown = sorted(set(changes) - fields - {"seed"}) + (["seed"] if "seed" in changes else [])
                if unknown:
                    raise ValueError(f"`overrides`: {unknown} are not TrainConfig fields one may change; "
                                     f"expected some of {sorted(fields - {'seed'})}")
                cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))
            else:
                cfg = dataclasses.replace(cfg, **{section: {**getattr(cfg, section), **changes}})
        return cfg

    def load_data(self, config: RunConfig):
        """``data(config)``, reused while consecutive runs describe their data the same way."""
        key = canonical_json(config.data)
        if key != self._data_key:
            self._data_key, self._data_value = None, None  # free the old data before building the new
            self._data_value = self.data(config)
            self._data_key = key
        return self._data_value

    def _prepare(self, config: RunConfig):
        with _distributed.main_first():  # several processes: one download per machine, never two at once
            data = self.load_data(config)
        if config.train is None:
            return data, None, None
        if not isinstance(data, Mapping) or "train" not in data:
            raise TypeError(f"{type(self).__name__}.data: an arm that trains needs data['train']")
        seed_all(config.seed)  # the initial weights depend on the seed and nothing else
        model = self.model(config, data)
        return data, model, self.loss(config)

    @staticmethod
    def _train_config(config: RunConfig) -> TrainConfig:
        # The checkpoint key covers the whole run (data, model, loss), not only the training options.
        return dataclasses.replace(config.train, params={**config.train.params, "run": config.hash})

    def run(self, arm: str, seed: int, scale: str, device="auto", *, cache: bool = True,
            progress: bool | None = None, **overrides: Mapping) -> Run:
        """Train (or load) and evaluate one arm with one seed; what a notebook calls.

        Args:
            arm, seed, scale: the run. A notebook passes its ``SCALE`` and ``SEED``.
            device: where to train (``"auto"``: :func:`pixelbook.runtime.resolve_device`).
            cache: train through :func:`pixelbook.training.train_or_load` (a rerun loads the
                checkpoint); ``False`` always trains.
            progress: the training progress bar (``None``: unless ``PIXELBOOK_PROGRESS=0``).
            **overrides: changes to the config by section, e.g. ``data={"dataset": "nyuv2"}``
                (see :meth:`run_config`).
        """
        config = self.run_config(arm, seed, scale, overrides)
        device = resolve_device(device)
        data, model, loss_fn = self._prepare(config)
        history, train_time = History(), 0.0
        if model is not None:
            t0 = time.time()
            kwargs = dict(evaluate=self.monitor(config, data), device=device, progress=progress)
            if cache:  # the bar is named after the checkpoint: "<chapter>-<arm>-seed<seed>"
                history = train_or_load(f"{self.chapter}-{arm}-seed{seed}", model, loss_fn, data["train"],
                                        self._train_config(config), verbose=False, **kwargs)
            else:
                history = fit(model, loss_fn, data["train"], self._train_config(config), desc=f"{arm} seed {seed}",
                              **kwargs)
            train_time = time.time() - t0
        t0 = time.time()
        metrics = _flat_metrics(self.evaluate(config, model, data), f"{type(self).__name__}.evaluate")
        return Run(config, model, history, metrics, data, train_time, time.time() - t0)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.chapter}: arms {[a.name for a in self.arms]}, "
                f"seeds {dict(self.seeds)}, {len(self.claims)} claims>")


# ----------------------------------------------------------------------------------------------
# Results files
# ----------------------------------------------------------------------------------------------


def result_status(experiment: Experiment, arm: str, seed: int, scale: str, root=None) -> str:
    """``"missing"``, ``"up to date"``, ``"stale: config"``, ``"stale: claims"`` or ``"unreadable"``."""
    path = _results.result_path(experiment.chapter, scale, arm, seed, root)
    if not path.exists():
        return "missing"
    try:
        record = _results.read_result(path)
    except ValueError:
        return "unreadable"
    if record.get("config_hash") != experiment.run_config(arm, seed, scale).hash:
        return "stale: config"
    if record.get("claims_hash") != experiment.claims_hash():
        return "stale: claims"
    return "up to date"


def record_run(experiment: Experiment, arm: str, seed: int, scale: str, device="auto", root=None,
               progress: bool | None = None, command: str | None = None, *,
               micro_batch_size: int | None = None, find_unused_parameters: bool = False) -> Path:
    """Train one arm with one seed afresh, evaluate it and write its results file; return the path.

    Training checkpoints every epoch to ``<cache>/runs/`` and an interrupted run resumes from there
    (bit-identical on a CPU); the checkpoint is deleted once the results file is written. The file
    is written atomically (:func:`pixelbook.results.write_result`) as soon as the run ends.

    A run with a :meth:`Experiment.shared_prefix` keeps its state after the prefix's epochs in
    ``<cache>/prefix/<chapter>/``, and a later run with the same prefix starts from that state
    instead of training those epochs again. Only in a clean checkout (the key holds the git
    commit, the device, the thread count and the number of processes, so the state is the one
    this run would compute); the provenance's ``shared_prefix`` names the arm that trained them and
    ``train_time_s`` counts only the epochs this run trained (its history keeps all of them).

    Under ``torchrun`` (a process group of several processes, :mod:`pixelbook.distributed`) every
    process calls this with the same arguments: they build the data (rank 0 first, so a download
    happens once), train together (:func:`pixelbook.training.fit`), each runs ``evaluate`` (see
    :func:`pixelbook.distributed.evaluate_metrics` for sharing it), and rank 0 alone writes the file
    and deletes the checkpoint. The provenance records ``world_size`` (1 for one process) and, for
    several, the backend and the number of machines. ``micro_batch_size`` and
    ``find_unused_parameters`` go to ``fit``.
    """
    config = experiment.run_config(arm, seed, scale)
    device = resolve_device(device)
    t_start = time.time()
    data, model, loss_fn = experiment._prepare(config)
    history, resumed, ckpt, shared = History(), False, None, None
    if model is not None:
        ckpt = os.path.join(cache_dir("runs", experiment.chapter), f"{scale}-{arm}-seed{seed}-{config.hash}.pt")
        resumed = bool(_distributed.broadcast_object(os.path.exists(ckpt)))  # rank 0's file counts
        prefix = _prefix_path(experiment, config, device)
        callback = None
        if prefix is not None:
            prefix_path, prefix_epochs = prefix
            if _distributed.is_main():
                shared = _start_from_prefix(prefix_path, ckpt, experiment._train_config(config), resumed)
            shared = _distributed.broadcast_object(shared)

            def callback(epoch, _history):  # keep the state after the prefix for the runs that share it
                if epoch == prefix_epochs and _distributed.is_main() and not os.path.exists(prefix_path):
                    state = torch.load(ckpt, map_location="cpu", weights_only=False)
                    state["prefix_from"] = arm
                    _atomic_save(state, prefix_path)
        history = fit(model, loss_fn, data["train"], experiment._train_config(config),
                      evaluate=experiment.monitor(config, data), device=device, checkpoint_path=ckpt,
                      progress=progress, desc=f"{arm} seed {seed}", micro_batch_size=micro_batch_size,
                      find_unused_parameters=find_unused_parameters, callback=callback)
    t_eval = time.time()
    metrics = _flat_metrics(experiment.evaluate(config, model, data), f"{type(experiment).__name__}.evaluate")
    path = _results.result_path(experiment.chapter, scale, arm, seed, root)
    world = _distributed.world_size()
    if _distributed.is_main():
        parallel = {"world_size": world}
        if world > 1:
            import torch.distributed as dist

            local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
            parallel["distributed"] = {"backend": dist.get_backend(), "nodes": max(1, world // local),
                                       "local_world_size": local, "micro_batch_size": micro_batch_size}
        elif micro_batch_size is not None:
            parallel["micro_batch_size"] = micro_batch_size
        record = {
            "format": _results.FORMAT,
            "chapter": experiment.chapter, "arm": arm, "seed": seed, "scale": scale,
            "config": config.to_dict(), "config_hash": config.hash,
            "claims_hash": experiment.claims_hash(),
            "metrics": metrics,
            "history": history.records,
            "provenance": {
                "pixelbook": _version(),
                **{f"git_{k}": v for k, v in _results.git_state().items()},
                "env": env_info(device),
                **parallel,
                # all epochs this run trained, across resumes (not those of a shared prefix)
                "train_time_s": sum(r.get("time", 0.0) for r in history.records[shared["epochs"] if shared else 0:]),
                "eval_time_s": time.time() - t_eval,
                "wall_time_s": time.time() - t_start,  # this process only
                "resumed": resumed,
                "shared_prefix": shared,
                "finished_at": _results.utc_now(),
                "command": command or " ".join([os.path.basename(sys.executable)] + sys.argv),
            },
        }
        path = _results.write_result(path, record)
        if ckpt:
            for leftover in (ckpt, ckpt + ".prefix.json"):
                if os.path.exists(leftover):
                    os.remove(leftover)
    _distributed.barrier()  # the file exists before any process moves on
    return path


def _prefix_path(experiment: Experiment, config: RunConfig, device) -> tuple[str, int] | None:
    """Where the state after ``config``'s shared prefix is kept, and the prefix's epochs; ``None``
    without a prefix or outside a clean checkout (uncommitted code could differ from the state's)."""
    prefix = experiment.shared_prefix(config)
    if prefix is None:
        return None
    key, epochs = prefix
    total = config.train.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs < total:
        raise ValueError(f"{type(experiment).__name__}.shared_prefix: expected epochs in [1, {total - 1}], "
                         f"got {epochs!r}")
    git = _results.git_state()
    if not git["commit"] or git["dirty"] is not False:
        return None
    where = {"key": key, "epochs": epochs, "commit": git["commit"], "pixelbook": _version(),
             "torch": torch.__version__, "device": torch.device(device).type, "threads": torch.get_num_threads(),
             "world_size": _distributed.world_size()}
    name = f"{config.scale}-seed{config.seed}-{stable_hash(where)}.pt"
    return os.path.join(cache_dir("prefix", experiment.chapter), name), epochs


def _start_from_prefix(prefix_path: str, ckpt: str, train: TrainConfig, resumed: bool) -> dict | None:
    """Make the kept prefix state this run's checkpoint (``fit`` then resumes from it); return
    ``{"arm": ..., "epochs": ...}`` when the run starts (or started, before an interruption) from one."""
    note = ckpt + ".prefix.json"
    if resumed:  # an interrupted run: it started from a prefix if the note says so
        if os.path.exists(note):
            with open(note, encoding="utf-8") as f:
                return json.load(f)
        return None
    if not os.path.exists(prefix_path):
        return None
    state = torch.load(prefix_path, map_location="cpu", weights_only=False)
    shared = {"arm": state.pop("prefix_from"), "epochs": int(state["epoch"])}
    state["key"] = config_hash(train)  # the same computation as this run's first epochs, by the prefix's key
    state["config"] = dataclasses.asdict(train)
    with open(note, "w", encoding="utf-8") as f:
        json.dump(shared, f)
    _atomic_save(state, ckpt)
    return shared


def _version() -> str:
    from .. import __version__

    return __version__


# ----------------------------------------------------------------------------------------------
# Replay
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayOutcome:
    """The recorded and replayed per-step losses of the start of a run, and how far apart they are."""

    recorded: tuple[float, ...]
    replayed: tuple[float, ...]
    same_env: bool

    @property
    def steps(self) -> int:
        return len(self.replayed)

    @property
    def max_abs_diff(self) -> float:
        return max(abs(a - b) for a, b in zip(self.recorded, self.replayed))

    @property
    def max_rel_diff(self) -> float:
        return max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(self.recorded, self.replayed))

    def matches(self, rtol: float = REPLAY_RTOL, atol: float = REPLAY_ATOL) -> bool:
        return len(self.recorded) == len(self.replayed) and all(
            abs(a - b) <= atol + rtol * abs(a) for a, b in zip(self.recorded, self.replayed))

    @property
    def first_divergence(self) -> int | None:
        """The first step (1-based) whose losses differ at all, or ``None``."""
        return next((i + 1 for i, (a, b) in enumerate(zip(self.recorded, self.replayed)) if a != b), None)

    def __str__(self) -> str:
        where = "identical" if self.first_divergence is None else f"first differs at step {self.first_divergence}"
        return (f"replayed {self.steps} steps: max |diff| {self.max_abs_diff:.3g}, max relative {self.max_rel_diff:.3g}, "
                f"{where} ({'same' if self.same_env else 'another'} device/thread count as the recording)")


def replay(experiment: Experiment, record: Mapping, steps: int | None = None, device="cpu",
           progress: bool = False) -> ReplayOutcome:
    """Rerun the first ``steps`` optimisation steps of a recorded run and return both loss sequences.

    The run is rebuilt from the *current* code: ``experiment.run_config(arm, seed, scale)`` (its hash
    must equal the recorded one, else the results are stale and a replay means nothing), the same
    data, the same seeded initial weights, the same batches and learning-rate schedule
    (:func:`pixelbook.training.fit` with ``max_steps``), with torch set to the thread count the
    recording used (restored afterwards; see :data:`REPLAY_RTOL` for why). ``steps`` defaults to
    the experiment's ``replay_steps``, else the whole first epoch.

    Raises:
        ValueError: the record is stale, has no training, or records fewer steps than asked.
    """
    arm, seed, scale = record["arm"], int(record["seed"]), record["scale"]
    config = experiment.run_config(arm, seed, scale)
    if config.hash != record["config_hash"]:
        raise ValueError(f"cannot replay {experiment.chapter} {arm} seed {seed}: the results file is stale "
                         f"(config hash {record['config_hash']}, the code gives {config.hash})")
    if config.train is None:
        raise ValueError(f"cannot replay {experiment.chapter} {arm}: this arm does not train")
    recorded = [v for r in record["history"] for v in r.get("step_loss", [])]
    if steps is None:
        steps = experiment.replay_steps or len(record["history"][0].get("step_loss", []))
    if not 1 <= steps <= len(recorded):
        raise ValueError(f"cannot replay {steps} steps: the record holds {len(recorded)} step losses")
    device = resolve_device(device)
    env = record.get("provenance", {}).get("env", {})
    threads_before = torch.get_num_threads()
    try:
        if env.get("torch_threads"):
            torch.set_num_threads(int(env["torch_threads"]))
        data, model, loss_fn = experiment._prepare(config)
        history = fit(model, loss_fn, data["train"], experiment._train_config(config),
                      evaluate=experiment.monitor(config, data), device=device, progress=progress, max_steps=steps)
        same = env.get("device") == str(device) and env.get("torch_threads") == torch.get_num_threads()
    finally:
        torch.set_num_threads(threads_before)
    same = same and record.get("provenance", {}).get("world_size", 1) == 1  # several processes round otherwise
    replayed = [v for r in history.records for v in r["step_loss"]]
    return ReplayOutcome(tuple(recorded[:steps]), tuple(replayed), same)
