"""Mutation testing of one module against its tests with mutmut (``make mutation``; not part of CI).

    python tools/mutation.py pixelbook/cas.py tests/test_cas.py [--max-children 2]

mutmut changes the module one operator, constant or condition at a time and runs the tests that
cover the changed function against each change; a change the tests do not notice ("survived")
is a behaviour no test pins down. The run happens in a temporary copy of the repository, so the
working tree is never touched; the score printed at the end is killed / (killed + survived)
(mutants no test covers count as survived; timeouts count as killed).

Equivalent mutants (no observable change, e.g. a different tolerance constant whose effect is below
float rounding) are listed in ``tools/mutation_equivalent.toml``, each with the module, the
function, the line before and after the change, and a one-line reason; ``kind = "device"`` marks a
change that only an accelerator can observe (device placement, the MPS branch) on a CPU-only run.
They are matched by that content, not by mutmut's mutant number (which moves when the function
changes); the score is printed raw, excluding the equivalent ones, and excluding both. A listed
mutant that the tests kill is reported as ``NOT EQUIVALENT`` and a listing that matches no mutant as ``stale``: both mean the list needs fixing.

``--report FILE`` writes every mutant (key, status, diff) as JSON; the survivors' diffs are printed.
``--only PATTERN`` (repeatable) runs only the mutants whose mutmut name matches the fnmatch pattern,
e.g. ``--only 'pixelbook.cas.x_cas_bounds*'``, so a long module can be measured in several short
jobs; ``--combine REPORT...`` then prints the score of the union of those reports without running
anything (a later report's entry wins where the same mutant appears twice, unless that report did
not run it: an ``--only`` report lists the mutants it left out with exit code ``None``).
``--mutants-from REPORT`` re-runs only the survivors of an earlier report of the same module (after
tests were added: a mutant the old tests killed stays killed, so the others need not run again)
and reports the combined counts; a survivor that no longer exists (the module changed) is named.

An editable install of pixelbook (``pip install -e .``) puts a finder on ``sys.meta_path`` that
would import the original package instead of mutmut's copy: it is removed before mutmut starts.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# mutmut 3 exit codes of a mutant's test run
KILLED, SURVIVED, NO_TESTS, TIMEOUT = {1, 3}, {0}, {33}, {36, -24, 24}
EQUIVALENT_FILE = ROOT / "tools" / "mutation_equivalent.toml"

# run by mutmut's Python in the temporary copy after the run: every mutant's exit code and diff
_DIFFS = """
import json, sys
from pathlib import Path
from mutmut.mutation.diff_apply import get_diff_for_mutant
out = {}
for meta in sorted(Path("mutants").rglob("*.py.meta")):
    src = meta.with_name(meta.name[:-len(".meta")]).relative_to("mutants")  # mutmut prepends mutants/ itself
    for key, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items():
        try:
            diff = get_diff_for_mutant(key, path=src)
        except Exception as e:  # a diff is a convenience; the exit code is what counts
            diff = f"(no diff: {e!r})"
        out[key] = {"code": code, "diff": diff}
json.dump(out, sys.stdout)
"""


def function_of(key: str) -> str:
    """``pixelbook.rmi.x_rmi_loss__mutmut_3`` -> ``rmi_loss``; ``...xǁRMILossǁforward__mutmut_1`` ->
    ``RMILoss.forward``."""
    name = key.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[-1]
    if name.startswith("x\u01c1"):
        return ".".join(name[2:].split("\u01c1"))
    return name[2:] if name.startswith("x_") else name


def changed_lines(diff: str) -> tuple[str, str]:
    """The removed and the added lines of a unified diff, each stripped, joined by newlines."""
    lines = diff.splitlines()
    old = [l[1:].strip() for l in lines if l.startswith("-") and not l.startswith("---")]
    new = [l[1:].strip() for l in lines if l.startswith("+") and not l.startswith("+++")]
    return "\n".join(old), "\n".join(new)


def load_equivalent_all(path: Path = EQUIVALENT_FILE) -> list[dict]:
    """Every listed equivalent mutant (module, function, old, new, reason)."""
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get("equivalent", [])
    for e in entries:
        missing = {"module", "function", "old", "new", "reason"} - set(e)
        if missing:
            raise ValueError(f"{path.name}: entry {e} lacks {sorted(missing)}")
    return entries


def load_equivalent(module: str, path: Path = EQUIVALENT_FILE) -> list[dict]:
    """The listed equivalent mutants of ``module``."""
    return [e for e in load_equivalent_all(path) if e["module"] == module]


def classify(mutants: dict[str, dict], equivalent: list[dict]) -> tuple[dict[str, str], list[str]]:
    """``{key: kind}`` of the survivors matched by ``equivalent`` (kind ``"equivalent"``, or
    ``"device"`` for a change observable only on an accelerator the run did not have), and the
    problems with the list (an entry that matches a killed mutant or none at all)."""
    matched, problems = {}, []
    for e in equivalent:
        want = (e["old"].strip(), e["new"].strip())
        hits = [k for k, m in mutants.items()
                if function_of(k) == e["function"] and changed_lines(m["diff"]) == want]
        if not hits:
            problems.append(f"stale: {e['function']}: {e['old']!r} -> {e['new']!r} matches no mutant")
        for k in hits:
            if mutants[k]["code"] in SURVIVED or mutants[k]["code"] in NO_TESTS:
                matched[k] = e.get("kind", "equivalent")
            else:
                problems.append(f"NOT EQUIVALENT (killed, code {mutants[k]['code']}): {k}")
    return matched, problems


def _beside(module: Path, files: list[Path]) -> list[str]:
    """Everything of the package but ``module``, as mutmut's ``also_copy`` wants it: whole folders
    where they do not contain the module, single files beside it and beside its parent folders
    (mutmut creates the module's own folders, not the others')."""
    out = set()
    chain = module.parents  # pixelbook/ops, pixelbook, .
    for f in files:
        if f == module:
            continue
        # the deepest folder of the module's chain that contains f
        for anc in chain:
            if anc == Path("."):
                break
            if anc in f.parents:
                rel = f.relative_to(anc)
                out.add(str(f) if len(rel.parts) == 1 else str(anc / rel.parts[0]) + "/")
                break
    return sorted(out)


def summarise(module: str, mutants: dict[str, dict], report: Path | None = None) -> int:
    """Print every survivor's diff, the problems of the equivalent list and the scores of
    ``mutants`` (``{key: {code, diff}}``); write them to ``report`` if given."""
    codes = Counter(m["code"] for m in mutants.values())
    killed = sum(n for c, n in codes.items() if c in KILLED or c in TIMEOUT)
    survived = sum(n for c, n in codes.items() if c in SURVIVED or c in NO_TESTS)
    other = sum(codes.values()) - killed - survived
    total = killed + survived
    equivalent, problems = classify(mutants, load_equivalent(module))
    for key in sorted(k for k, m in mutants.items() if m["code"] in SURVIVED or m["code"] in NO_TESTS):
        tag = equivalent[key] if key in equivalent else ("no tests" if mutants[key]["code"] in NO_TESTS else "survived")
        print(f"\n## {key} ({tag})\n{mutants[key]['diff']}")
    for p in problems:
        print(f"mutation_equivalent.toml: {p}")
    if report:
        report.write_text(json.dumps(mutants, indent=1, ensure_ascii=False))
    n_eq = sum(1 for k in equivalent.values() if k == "equivalent")
    n_dev = len(equivalent) - n_eq

    def pct(n, d):
        return f"{100 * n / d:.1f} %" if d else "nan"

    print(f"{module}: {total} mutants, {killed} killed, {survived} survived "
          f"(incl. {codes.get(33, 0)} without tests; {n_eq} listed equivalent, {n_dev} device-only), "
          f"{other} other; score {pct(killed, total)} raw, {pct(killed, total - n_eq)} excluding equivalent, "
          f"{pct(killed, total - n_eq - n_dev)} excluding equivalent and device-only")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module", help="the module to mutate, e.g. pixelbook/cas.py")
    ap.add_argument("tests", nargs="*", help="its test files")
    ap.add_argument("--max-children", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    ap.add_argument("--report", type=Path, help="write every mutant (key, exit code, diff) here as JSON")
    ap.add_argument("--mutants-from", type=Path,
                    help="a --report of an earlier run of this module: re-run only its survivors")
    ap.add_argument("--only", action="append", default=[], metavar="PATTERN",
                    help="run only the mutants whose name matches this fnmatch pattern (repeatable)")
    ap.add_argument("--combine", type=Path, nargs="+", metavar="REPORT",
                    help="print the score of the union of these --report files of this module; run nothing")
    args = ap.parse_args()
    if args.combine:
        mutants = {}
        for r in args.combine:  # an --only report lists the mutants it did not run with code None
            for k, m in json.loads(r.read_text()).items():
                if m["code"] is not None or k not in mutants:
                    mutants[k] = m
        return summarise(args.module, mutants, report=args.report)
    if not args.tests:
        ap.error("name the module's test files")
    previous, names = None, []
    if args.mutants_from:
        previous = json.loads(args.mutants_from.read_text())
        names = sorted(k for k, m in previous.items() if m["code"] in SURVIVED or m["code"] in NO_TESTS)
        if args.only:
            names = [k for k in names if any(fnmatch.fnmatch(k, pat) for pat in args.only)]
    elif args.only:
        names = list(args.only)
    if args.report:
        args.report = args.report.resolve()
    work = Path(tempfile.mkdtemp(prefix="pixelbook-mutation-"))
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True,
                               text=True).stdout.split()
        for f in files:
            if f.startswith(("pixelbook/", "tests/")) or f == "pyproject.toml":
                (work / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, work / f)
        # the rest of the package beside the mutated module (copying all of pixelbook/ would
        # overwrite mutmut's mutated copy of it)
        also = _beside(Path(args.module), [Path(f) for f in files if f.startswith("pixelbook/")])
        with open(work / "pyproject.toml", "a") as fh:
            fh.write(f'\n[tool.mutmut]\npaths_to_mutate = ["{args.module}"]\n'
                     f'tests_dir = {json.dumps(args.tests)}\nalso_copy = {json.dumps(also + ["tests/"])}\n')
        (work / "_mutant_names.json").write_text(json.dumps(names))
        runner = ("import json, sys\n"
                  "sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith('__editable__')]\n"
                  "from mutmut.__main__ import cli\n"
                  f"sys.argv = ['mutmut', 'run', '--max-children', '{args.max_children}']"
                  " + json.load(open('_mutant_names.json'))\n"
                  "cli()\n")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([sys.executable, "-c", runner], cwd=work, env=env)
        res = subprocess.run([sys.executable, "-c", _DIFFS], cwd=work, env=env, capture_output=True, text=True)
        if res.returncode:
            print(res.stderr, file=sys.stderr)
            mutants = {k: {"code": c, "diff": "(no diff)"} for meta in (work / "mutants").rglob("*.meta")
                       for k, c in json.loads(meta.read_text()).get("exit_code_by_key", {}).items()}
        else:
            mutants = json.loads(res.stdout)
        if previous is not None:  # the earlier run's results, with its survivors' new ones
            gone = [k for k in names if k not in mutants]
            print(f"re-ran the {len(names)} survivors of {args.mutants_from}; {len(gone)} no longer exist"
                  + "".join(f"\n  gone: {k}" for k in gone))
            mutants = {**{k: m for k, m in previous.items() if k not in gone},
                       **{k: mutants[k] for k in names if k in mutants}}
        return summarise(args.module, mutants, report=args.report)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
