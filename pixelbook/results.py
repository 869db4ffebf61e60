"""Results with provenance, and claims written as data before the experiment runs.

A chapter's ``medium`` experiment (:mod:`pixelbook.experiments`) writes one JSON file per arm and
seed under ``results/<chapter>/`` (``python -m pixelbook.run``, ``make results``). Each file holds
the metrics, the whole training history (including the loss of every step), the run's
configuration and its hash, the hash of the chapter's claims at run time, the package version, the
git commit (and whether the tree had uncommitted changes), the machine and the wall time.

A :class:`Claim` is a sentence with numbers, fixed in the experiment's module before the run:

    arm A beats arm B on metric M by more than a margin m on at least k of the n seeds

(or, with ``test="paired_t"``, a one-sided paired t-test of the per-seed differences against the
margin). :func:`evaluate_claim` evaluates exactly that statement on the recorded results and
reports it in words, "holds on k of n seeds". A chapter's check cell asserts
``outcome.holds == claim.expected`` (:meth:`ClaimOutcome.check`): never conditional on its own
outcome.

Example:
    >>> c = Claim("depth_loss", "the L1 term helps", metric="depth.d1", arm_a="l1l2", arm_b="l2",
    ...           margin=0.0, k=2, n=3)
    >>> r = Results("toy", "medium", [
    ...     {"arm": a, "seed": s, "metrics": {"depth.d1": v}}
    ...     for a, vals in {"l1l2": [0.80, 0.82, 0.79], "l2": [0.78, 0.80, 0.79]}.items()
    ...     for s, v in enumerate(vals)])
    >>> evaluate_claim(c, r).words
    'holds on 2 of 3 seeds (needs 2): holds'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ._checks import check_choice

__all__ = ["Claim", "ClaimOutcome", "Results", "Summary", "evaluate_claim", "evaluate_claims", "claims_hash",
           "canonical_json", "plain_data", "stable_hash", "results_root", "result_path", "write_result", "read_result",
           "load_results", "git_state", "glance_markdown", "FORMAT"]

#: The ``format`` field of a results file; bumped when the layout changes.
FORMAT = "pixelbook-result/1"

_TESTS = ("k_of_n", "paired_t")


# ----------------------------------------------------------------------------------------------
# Hashing
# ----------------------------------------------------------------------------------------------


def _plain(o, floats_as_text: bool = True):
    """A JSON-ready copy of ``o``: dataclasses and mappings become dicts, tuples lists; floats become
    their ``repr`` (for hashing: 2 and 2.0 differ) or stay floats (for files people read)."""
    import dataclasses

    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {"__type__": type(o).__name__,
                **{f.name: _plain(getattr(o, f.name), floats_as_text) for f in dataclasses.fields(o)}}
    if isinstance(o, Mapping):
        return {str(k): _plain(v, floats_as_text) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v, floats_as_text) for v in o]
    if isinstance(o, bool) or o is None or isinstance(o, (int, str)):
        return o
    if isinstance(o, float):
        return repr(o) if floats_as_text else o
    if hasattr(o, "item") and callable(o.item):  # numpy / torch scalars
        return _plain(o.item(), floats_as_text)
    raise TypeError(f"cannot hash a {type(o).__name__} ({o!r}): use numbers, strings, lists, dicts or dataclasses")


def canonical_json(obj) -> str:
    """The canonical text that :func:`stable_hash` hashes (sorted keys, floats as ``repr``)."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"))


def plain_data(obj):
    """``obj`` as plain JSON data (dicts, lists, numbers, strings), as results files store configs."""
    return _plain(obj, floats_as_text=False)


def stable_hash(obj, length: int = 16) -> str:
    """A hash of ``obj`` that depends only on its content: not on the package version or the machine.

    Unlike :func:`pixelbook.training.config_hash` (a checkpoint-cache key, which changes with every
    release), a results file's hash changes only when what the run does is described differently.

    Raises:
        TypeError: for values that have no canonical text (functions, tensors, arbitrary objects).
    """
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


# ----------------------------------------------------------------------------------------------
# Claims
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A claim fixed before the experiment runs: "A beats B on ``metric`` by more than ``margin``".

    With ``test="k_of_n"`` (the default) the claim holds when the per-seed difference beats the
    margin on at least ``k`` of the ``n`` seeds; with ``test="paired_t"`` when a one-sided paired
    t-test of the differences against the margin gives ``p < alpha``. The difference of seed
    :math:`s` is :math:`d_s = M_A(s) - M_B(s)` when higher is better, else :math:`M_B(s) - M_A(s)`,
    so a positive :math:`d_s` always means "A is better". Seed :math:`s` counts when
    :math:`d_s > m` strictly: a tie with the margin does not count. A negative margin states
    "A is not worse than B by :math:`|m|` or more". With ``metric_b``, B's value is read from
    that metric (``arm_b`` may then be ``arm_a``): "arm A's ``metric`` beats arm B's
    ``metric_b``", e.g. one trained model scored two ways (an ODE solved by two solvers).

    Attributes:
        id: short identifier, unique in the chapter (``"depth_l1_term"``).
        statement: the claim in words, for tables ("The L1 term of Eq. 2.3 improves δ<1.25").
        metric: a key of the results' ``metrics`` (``"depth.d1"``).
        metric_b: the metric read for ``arm_b``; ``None`` (default): ``metric``. Hashed only
            when set, so claims without it keep their hash.
        arm_a, arm_b: the arms compared (names of the experiment's arms).
        margin: :math:`m`, in the metric's units, fixed before the run (say why in a comment).
        k: seeds that must beat the margin (``test="k_of_n"``); ``None`` for ``"paired_t"``.
        n: seeds the claim is evaluated on: exactly the experiment's seeds at ``scale``.
        higher_is_better: the metric's direction.
        test: ``"k_of_n"`` or ``"paired_t"``.
        alpha: significance level of ``"paired_t"``.
        scale: the scale whose results decide the claim (``"medium"``).
        expected: what the chapter asserts: ``True`` (the claim holds) or ``False`` (it fails, and
            the prose says so). Not hashed: it records the outcome, it does not define the claim.
        paper: the paper's number(s), dataset and scale, for tables (not hashed).
        fmt: format of the metric in words and tables (not hashed).
    """

    id: str
    statement: str
    metric: str
    arm_a: str
    arm_b: str
    margin: float = 0.0
    k: int | None = None
    n: int = 3
    higher_is_better: bool = True
    test: str = "k_of_n"
    alpha: float = 0.05
    scale: str = "medium"
    expected: bool = True
    paper: str = ""
    fmt: str = ".3f"
    metric_b: str | None = None

    #: The fields that decide the outcome; :func:`claims_hash` covers exactly these.
    HASHED = ("id", "metric", "arm_a", "arm_b", "margin", "k", "n", "higher_is_better", "test", "alpha", "scale")

    def __post_init__(self):
        from .runtime import SCALES

        if not isinstance(self.id, str) or not self.id.isidentifier():
            raise ValueError(f"`id`: expected an identifier such as 'depth_l1_term', got {self.id!r}")
        for name in ("statement", "metric", "arm_a", "arm_b"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"`{name}`: expected a non-empty string, got {getattr(self, name)!r}")
        if self.metric_b is not None and (not isinstance(self.metric_b, str) or not self.metric_b):
            raise ValueError(f"`metric_b`: expected None or a non-empty string, got {self.metric_b!r}")
        if self.arm_a == self.arm_b and self.metric_of_b == self.metric:
            raise ValueError(f"`arm_b`: expected an arm other than arm_a, got {self.arm_b!r} twice "
                             f"(or set `metric_b` to compare two metrics of one arm)")
        check_choice(self.test, "test", _TESTS)
        check_choice(self.scale, "scale", SCALES)
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not math.isfinite(self.margin):
            raise ValueError(f"`margin`: expected a finite number, got {self.margin!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"`n`: expected an int >= 1, got {self.n!r}")
        if self.test == "k_of_n":
            if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= self.n:
                raise ValueError(f"`k`: expected an int in [1, n={self.n}] for test='k_of_n', got {self.k!r}")
        else:
            if self.k is not None:
                raise ValueError(f"`k`: expected None for test='paired_t' (the test decides), got {self.k!r}")
            if self.n < 2:
                raise ValueError(f"`n`: a paired t-test needs n >= 2 seeds, got {self.n}")
            if not 0 < self.alpha < 1:
                raise ValueError(f"`alpha`: expected a level in (0, 1), got {self.alpha!r}")
        if not isinstance(self.expected, bool):
            raise ValueError(f"`expected`: expected True or False, got {self.expected!r}")

    def hashed(self) -> dict:
        """The fields that decide the outcome (:attr:`HASHED`, and ``metric_b`` when set), as a dict."""
        out = {name: getattr(self, name) for name in self.HASHED}
        if self.metric_b is not None:
            out["metric_b"] = self.metric_b
        return out

    @property
    def metric_of_b(self) -> str:
        """The metric read for ``arm_b``: ``metric_b``, else ``metric``."""
        return self.metric if self.metric_b is None else self.metric_b

    def rule(self) -> str:
        """The claim's decision rule in words, e.g. "δ: a − b > 0.005 on ≥ 3 of 3 seeds"."""
        a, b = self.arm_a, self.arm_b
        if self.metric_b is not None:
            a, b = f"{a} ({self.metric})", f"{b} ({self.metric_b})"
        diff = f"{a} − {b}" if self.higher_is_better else f"{b} − {a}"
        direction = "higher" if self.higher_is_better else "lower"
        test = (f"on at least {self.k} of {self.n} seeds" if self.test == "k_of_n" else
                f"(one-sided paired t-test over {self.n} seeds, p < {self.alpha:g})")
        return f"{self.metric} ({direction} is better): {diff} > {format(self.margin, self.fmt)} {test}"


def claims_hash(claims: Iterable[Claim]) -> str:
    """Hash of what decides each claim (:attr:`Claim.HASHED`), independent of their order.

    Results files record it at run time, so a test can show that no margin, threshold or arm was
    changed after the results were produced.
    """
    items = sorted((c.hashed() for c in claims), key=lambda d: d["id"])
    return stable_hash(items)


@dataclass(frozen=True)
class ClaimOutcome:
    """What :func:`evaluate_claim` found: the per-seed values, differences and the verdict.

    Attributes:
        claim: the :class:`Claim` evaluated.
        seeds: the seeds, in increasing order.
        a, b: the metric of ``arm_a`` and ``arm_b`` per seed.
        diffs: :math:`d_s` per seed (positive = A better).
        wins: seeds with :math:`d_s > m`.
        holds: the verdict of the claim's test.
        t, p: the paired t-test's statistic and one-sided p-value (``test="paired_t"`` only).
    """

    claim: Claim
    seeds: tuple[int, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    diffs: tuple[float, ...]
    wins: int
    holds: bool
    t: float | None = None
    p: float | None = None

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def words(self) -> str:
        """``"holds on k of n seeds (needs k'): holds"`` — or ``... : does not hold``."""
        verdict = "holds" if self.holds else "does not hold"
        if self.claim.test == "k_of_n":
            return f"holds on {self.wins} of {self.n} seeds (needs {self.claim.k}): {verdict}"
        return (f"holds on {self.wins} of {self.n} seeds; paired t-test against the margin: "
                f"t = {self.t:.2f}, one-sided p = {self.p:.3f} (needs p < {self.claim.alpha:g}): {verdict}")

    def __str__(self) -> str:
        c, f = self.claim, self.claim.fmt
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        diffs = ", ".join(format(d, "+" + f) for d in self.diffs)
        return (f"[{c.id}] {c.statement}\n"
                f"  {c.metric}: {c.arm_a} {format(mean(self.a), f)} vs {c.arm_b}"
                f"{'' if c.metric_b is None else f' ({c.metric_b})'} {format(mean(self.b), f)} "
                f"(means over seeds {list(self.seeds)}); per-seed difference (positive = {c.arm_a} better): "
                f"[{diffs}], margin {format(c.margin, f)}\n"
                f"  {self.words}" + ("" if self.holds == c.expected else
                                     f"  <-- expected it to {'hold' if c.expected else 'fail'}"))

    def check(self) -> None:
        """Assert the pre-registered expectation: ``holds == claim.expected``.

        Raises:
            AssertionError: with the whole outcome in the message, when the verdict differs.
        """
        if self.holds != self.claim.expected:
            raise AssertionError(f"claim {self.claim.id!r} was expected to "
                                 f"{'hold' if self.claim.expected else 'fail'}, but it "
                                 f"{'holds' if self.holds else 'does not hold'}:\n{self}")


def evaluate_claim(claim: Claim, results: "Results") -> ClaimOutcome:
    """Evaluate exactly ``claim`` on ``results`` (one chapter, the claim's scale).

    Raises:
        ValueError: the results are of another scale, an arm or the metric is missing, the two
            arms do not have the same seeds, the number of seeds is not ``claim.n``, or a value is
            not finite — each message says what is missing and how to produce it.
    """
    if results.scale != claim.scale:
        raise ValueError(f"claim {claim.id!r} is decided at scale {claim.scale!r}, got results of scale {results.scale!r}")
    a, b = results.values(claim.arm_a, claim.metric), results.values(claim.arm_b, claim.metric_of_b)
    if set(a) != set(b) or len(a) != claim.n:
        raise ValueError(
            f"claim {claim.id!r} needs the same {claim.n} seeds for {claim.arm_a!r} and {claim.arm_b!r} at scale "
            f"{claim.scale!r}; {results.where} has seeds {sorted(a)} and {sorted(b)}: "
            f"run `python -m pixelbook.run {results.chapter} --scale {claim.scale}`")
    seeds = tuple(sorted(a))
    va, vb = tuple(a[s] for s in seeds), tuple(b[s] for s in seeds)
    for arm, metric, vals in ((claim.arm_a, claim.metric, va), (claim.arm_b, claim.metric_of_b, vb)):
        bad = [s for s, v in zip(seeds, vals) if not math.isfinite(v)]
        if bad:
            raise ValueError(f"claim {claim.id!r}: {metric} of {arm!r} is not finite for seeds {bad}")
    sign = 1.0 if claim.higher_is_better else -1.0
    diffs = tuple(sign * (x - y) for x, y in zip(va, vb))
    wins = sum(d > claim.margin for d in diffs)
    t = p = None
    if claim.test == "k_of_n":
        holds = wins >= claim.k
    else:
        t, p = _paired_t(diffs, claim.margin)
        holds = p < claim.alpha
    return ClaimOutcome(claim, seeds, va, vb, diffs, wins, holds, t, p)


def _paired_t(diffs: Sequence[float], margin: float) -> tuple[float, float]:
    """One-sided t-test of mean(diffs) > margin; zero spread gives t = ±inf and p = 0 or 1."""
    from scipy import stats

    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    if sd == 0.0:
        return (math.inf, 0.0) if mean > margin else (-math.inf if mean < margin else 0.0, 1.0)
    t = (mean - margin) / (sd / math.sqrt(n))
    return t, float(stats.t.sf(t, n - 1))


def evaluate_claims(experiment, results: "Results | None" = None) -> list[ClaimOutcome]:
    """Evaluate every claim of ``experiment`` (loading its results when ``results`` is ``None``)."""
    outcomes = []
    for claim in experiment.claims:
        res = results if results is not None else load_results(experiment.chapter, claim.scale)
        outcomes.append(evaluate_claim(claim, res))
    return outcomes


# ----------------------------------------------------------------------------------------------
# Loaded results
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (``ddof=1``; ``nan`` for one seed) over seeds."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...] = field(default=())

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        spread = "–" if not math.isfinite(self.std) else format(self.std, spec)
        return f"{format(self.mean, spec)} ± {spread}"


class Results:
    """The results of one chapter at one scale: one record (a results file's content) per arm and seed.

    Args:
        chapter: the notebook stem.
        scale: the scale of every record.
        records: dicts with at least ``arm``, ``seed`` and ``metrics``.
        where: where they came from (for messages).
    """

    def __init__(self, chapter: str, scale: str, records: Sequence[Mapping], where: str | None = None):
        self.chapter, self.scale, self.records = chapter, scale, list(records)
        self.where = where or f"the results of {chapter} ({scale})"
        seen = set()
        for r in self.records:
            key = (r["arm"], int(r["seed"]))
            if key in seen:
                raise ValueError(f"{self.where}: two records for arm {key[0]!r}, seed {key[1]}")
            seen.add(key)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"Results({self.chapter!r}, {self.scale!r}, {len(self)} runs of arms {self.arms})"

    @property
    def arms(self) -> list[str]:
        return list(dict.fromkeys(r["arm"] for r in self.records))

    def seeds(self, arm: str) -> list[int]:
        return sorted(int(r["seed"]) for r in self.records if r["arm"] == arm)

    def record(self, arm: str, seed: int) -> dict:
        for r in self.records:
            if r["arm"] == arm and int(r["seed"]) == seed:
                return r
        raise KeyError(f"{self.where}: no run of arm {arm!r} with seed {seed}")

    def values(self, arm: str, metric: str) -> dict[int, float]:
        """``{seed: value}`` of ``metric`` for ``arm``.

        Raises:
            KeyError: naming the arm or metric that is missing and what there is.
        """
        runs = [r for r in self.records if r["arm"] == arm]
        if not runs:
            raise KeyError(f"{self.where}: no runs of arm {arm!r}; arms: {self.arms}")
        missing = [int(r["seed"]) for r in runs if metric not in r["metrics"]]
        if missing:
            raise KeyError(f"{self.where}: arm {arm!r} has no metric {metric!r} (seeds {missing}); "
                           f"metrics: {sorted(runs[0]['metrics'])}")
        return {int(r["seed"]): float(r["metrics"][metric]) for r in runs}

    def summary(self, arm: str, metric: str) -> Summary:
        vals = list(self.values(arm, metric).values())
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else math.nan
        return Summary(mean, std, len(vals), tuple(vals))

    def _cell(self, arm: str, metric: str, fmt: str) -> str:
        """``summary(arm, metric)`` formatted, or blank where the arm lacks the metric."""
        try:
            return format(self.summary(arm, metric), fmt)
        except KeyError:
            return ""

    def table(self, metrics: Sequence[str], arms: Sequence[str] | None = None, fmt: str = ".3f",
              labels: Mapping[str, str] | None = None, markdown: bool = False) -> str:
        """A table: one row per arm, "mean ± sd" per metric (blank where an arm lacks it), and a
        last line naming the seeds and the scale. Plain text, or with ``markdown=True`` a Markdown
        table to show with ``display(Markdown(...))`` (the book renders it as a table)."""
        arms = list(arms) if arms is not None else self.arms
        labels = dict(labels or {})
        head = [labels.get(m, m) for m in metrics]
        rows = {arm: [self._cell(arm, m, fmt) for m in metrics] for arm in arms}
        seeds = "/".join(str(x) for x in sorted({len(self.seeds(a)) for a in arms}))
        if markdown:
            lines = ["| | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
            lines += [f"| {labels.get(arm, arm)} | " + " | ".join(cells) + " |" for arm, cells in rows.items()]
            lines += ["", f"Mean ± sample standard deviation over {seeds} seeds, `{self.scale}` scale."]
            return "\n".join(lines)
        width = max([len(h) for h in head] + [len(format(Summary(0.0, 0.0, 2), fmt)) + 1])
        name_w = max(len(labels.get(a, a)) for a in arms) + 2
        lines = [" " * name_w + "".join(f"{h:>{width + 2}}" for h in head)]
        for arm, cells in rows.items():
            lines.append(f"{labels.get(arm, arm):<{name_w}}" + "".join(f"{c:>{width + 2}}" for c in cells))
        lines.append(f"(mean ± sample std over {seeds} seeds, scale {self.scale})")
        return "\n".join(lines)

    def history(self, arm: str, seed: int):
        """The recorded :class:`pixelbook.training.History` of one run (for plots)."""
        from .training import History

        return History(list(self.record(arm, seed)["history"]))


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def results_root(root: str | os.PathLike | None = None) -> Path:
    """The results folder: ``root``, else ``PIXELBOOK_RESULTS``, else ``results/`` of this checkout,
    else the copy installed with the package (``pixelbook/_results``, read-only).

    A clone (or an editable install) reads and writes ``results/``; a pip install (Colab) carries the
    committed results of the commit it was built from, so a notebook run there prints the same
    numbers as the book.

    Raises:
        FileNotFoundError: when neither a checkout nor an installed copy is found and neither
            ``root`` nor ``PIXELBOOK_RESULTS`` says where the results are.
    """
    if root is not None:
        return Path(root)
    if os.environ.get("PIXELBOOK_RESULTS"):
        return Path(os.environ["PIXELBOOK_RESULTS"])
    repo = _repo_root()
    if (repo / "pyproject.toml").exists():
        return repo / "results"
    installed = Path(__file__).resolve().parent / "_results"
    if installed.is_dir():
        return installed
    raise FileNotFoundError("no results folder: pixelbook is installed without its results and not running "
                            "from its repository. Clone it (git clone https://github.com/pixelbook-org/pixelbook) "
                            "and set PIXELBOOK_RESULTS to its results/ folder")


def result_path(chapter: str, scale: str, arm: str, seed: int, root=None) -> Path:
    """``<root>/<chapter>/<scale>-<arm>-seed<seed>.json``."""
    return results_root(root) / chapter / f"{scale}-{arm}-seed{int(seed)}.json"


def write_result(path: str | os.PathLike, record: Mapping) -> Path:
    """Write one results file atomically: a temporary file in the same folder, then a rename.

    A reader (or a later run) never sees a half-written file, even if the process is killed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, sort_keys=True, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_result(path: str | os.PathLike) -> dict:
    """One results file as a dict.

    Raises:
        ValueError: the file is not valid JSON or not a results file of this format.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it and rerun `make results`") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} results file (format {record.get('format') if isinstance(record, dict) else None!r})")
    return record


def load_results(chapter: str, scale: str = "medium", root=None) -> Results:
    """Every results file of ``chapter`` at ``scale`` (``<root>/<chapter>/<scale>-*.json``).

    Raises:
        FileNotFoundError: no results for that chapter and scale (the message gives the command).
    """
    folder = results_root(root) / chapter
    paths = sorted(folder.glob(f"{scale}-*.json"))
    if not paths:
        raise FileNotFoundError(f"no {scale} results for {chapter} in {folder}: run "
                                f"`make results NB=notebooks/{chapter}.ipynb` (python -m pixelbook.run {chapter} --scale {scale})")
    records = [read_result(p) for p in paths]
    wrong = [p.name for p, r in zip(paths, records) if r["scale"] != scale or r["chapter"] != chapter]
    if wrong:
        raise ValueError(f"{folder}: files {wrong} do not hold {chapter} at scale {scale}")
    return Results(chapter, scale, records, where=f"{folder} ({scale})")


def git_state(path: str | os.PathLike | None = None) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout holding ``path``.

    ``dirty`` is true when tracked or untracked (not ignored) files differ from the commit,
    leaving out what ``make results`` itself writes (``results/``, ``book/results.md``). ``None``
    outside a git checkout.
    """
    repo = Path(path) if path is not None else _repo_root()
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=30, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", ".", ":(exclude)results",
                                 ":(exclude)book/results.md"],
                                capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ----------------------------------------------------------------------------------------------
# The "Results at a glance" page
# ----------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _within_arm_row(stem: str, exp, claim, root) -> str:
    """The glance page's row of a claim about one arm (an experiment's ``within_arm_claims``: objects with
    ``statement``, ``arm``, ``metric``, ``threshold``, ``k``, ``n``, ``paper`` and ``evaluate(results)`` ->
    an outcome with ``values``, ``wins`` and ``holds``), evaluated on the ``medium`` results."""
    try:
        res = load_results(stem, getattr(claim, "scale", "medium"), root)
        out = claim.evaluate(res)
    except FileNotFoundError:
        ours, verdict = "not run yet", "–"
    except (ValueError, KeyError):
        ours, verdict = "incomplete or stale results", "–"
    else:
        f = getattr(claim, "fmt", ".3f")
        per_seed = ", ".join(format(v, f) for v in out.values)
        ours = f"{format(res.summary(claim.arm, claim.metric), f)}; per seed {per_seed}"
        words = f"above {claim.threshold:g} on {out.wins} of {len(out.values)} seeds (needs {claim.k})"
        verdict = f"**{'holds' if out.holds else 'does not hold'}** ({words})"
    rule = f"`{claim.metric}` of {claim.arm} above {claim.threshold:g}, ≥ {claim.k} of {claim.n} seeds"
    notebook = _repo_root() / "notebooks" / f"{stem}.ipynb"
    chapter = f"[{exp.number}](../notebooks/{stem}.ipynb)" if notebook.exists() else exp.number
    return "| " + " | ".join(_cell(x) for x in (chapter, claim.statement, rule, ours, claim.paper or "–",
                                                 verdict)) + " |"


def glance_markdown(root=None) -> str:
    """The book's "Results at a glance" page (``book/results.md``), generated from the results.

    One row per claim of every registered experiment: the claim, our result (mean ± sample std of
    both arms, the per-seed differences), the paper's number and dataset, and the verdict in words;
    then one row per claim about one arm (``within_arm_claims``: the arm's mean ± std and per-seed
    values against the threshold).
    ``python -m pixelbook.run --page book/results.md`` writes it (``make results`` does);
    ``tests/test_results.py`` fails when the committed page differs from this function's output.
    """
    from . import experiments

    lines = [
        "# Results at a glance",
        "",
        "<!-- Generated by `python -m pixelbook.run --page book/results.md` (`make results`) from",
        "     results/ and the claims in pixelbook/experiments/. Do not edit: tests/test_results.py",
        "     fails when this page differs from what the command writes. -->",
        "",
        "Every claim the chapters test at `medium` scale, as it was written in",
        "`pixelbook/experiments/` before the experiment ran: arm A beats arm B on a metric by more than",
        "a margin on at least *k* of *n* seeds (or a paired t-test over the seeds); a claim about one arm",
        "(Chapter 6's within-arm claims) says that its metric exceeds a threshold on at least *k* of *n*",
        "seeds. Our numbers are",
        "means ± sample standard deviations over seeds, on the chapter's synthetic or bundled data; the",
        "paper's numbers are on its own datasets at full scale, so they are quoted for the direction",
        "of the effect, not for comparison of values. Each chapter's check cell asserts the verdict",
        "shown here.",
        "",
    ]
    rows = []
    for stem in experiments.names():
        exp = experiments.get(stem)
        for claim in exp.claims:
            try:
                res = load_results(stem, claim.scale, root)
                out = evaluate_claim(claim, res)
            except FileNotFoundError:
                ours, verdict = "not run yet", "–"
            except (ValueError, KeyError):
                ours, verdict = "incomplete or stale results", "–"
            else:
                f = claim.fmt
                sa, sb = res.summary(claim.arm_a, claim.metric), res.summary(claim.arm_b, claim.metric_of_b)
                diffs = ", ".join(format(d, "+" + f) for d in out.diffs)
                ours = f"{format(sa, f)} vs {format(sb, f)}; per seed {diffs}"
                verdict = f"**{'holds' if out.holds else 'does not hold'}** ({out.words.rsplit(':', 1)[0]})"
            vs = claim.arm_b if claim.metric_b is None else f"{claim.arm_b} (`{claim.metric_b}`)"
            rule = (f"`{claim.metric}`: {claim.arm_a} vs {vs}, margin {format(claim.margin, claim.fmt)}, "
                    + (f"≥ {claim.k} of {claim.n} seeds" if claim.test == "k_of_n"
                       else f"paired t-test, p < {claim.alpha:g}, {claim.n} seeds"))
            notebook = _repo_root() / "notebooks" / f"{stem}.ipynb"  # link only to a page the book has
            chapter = f"[{exp.number}](../notebooks/{stem}.ipynb)" if notebook.exists() else exp.number
            rows.append("| " + " | ".join(_cell(x) for x in (
                chapter, claim.statement, rule, ours, claim.paper or "–",
                verdict)) + " |")
        for claim in exp.within_arm_claims:
            rows.append(_within_arm_row(stem, exp, claim, root))
    if rows:
        lines += ["| chapter | claim | rule | ours (A vs B, or A alone) | paper | verdict |", "|---|---|---|---|---|---|",
                  *rows, "",
                  "Chapters without a row have no `medium` experiment yet.", ""]
    else:
        lines += ["No chapter has a `medium` experiment yet.", ""]
    return "\n".join(lines)
