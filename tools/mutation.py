"""Mutation testing of one module against its tests with mutmut (``make mutation``; not part of CI).

    python tools/mutation.py pixelbook/cas.py tests/test_cas.py [--max-children 2]

mutmut changes the module one operator, constant or condition at a time and runs the tests that
cover the changed function against each change; a change the tests do not notice ("survived")
is a behaviour no test pins down. The run happens in a temporary copy of the repository, so the
working tree is never touched; the score printed at the end is killed / (killed + survived)
(mutants no test covers count as survived; timeouts count as killed).

An editable install of pixelbook (``pip install -e .``) puts a finder on ``sys.meta_path`` that
would import the original package instead of mutmut's copy: it is removed before mutmut starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# mutmut 3 exit codes of a mutant's test run
KILLED, SURVIVED, NO_TESTS, TIMEOUT = {1, 3}, {0}, {33}, {36, -24, 24}


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module", help="the module to mutate, e.g. pixelbook/cas.py")
    ap.add_argument("tests", nargs="+", help="its test files")
    ap.add_argument("--max-children", type=int, default=2)
    args = ap.parse_args()
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
        runner = ("import sys\n"
                  "sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith('__editable__')]\n"
                  "from mutmut.__main__ import cli\n"
                  f"sys.argv = ['mutmut', 'run', '--max-children', '{args.max_children}']\n"
                  "cli()\n")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([sys.executable, "-c", runner], cwd=work, env=env)
        codes = Counter()
        for meta in (work / "mutants").rglob("*.meta"):
            for code in json.loads(meta.read_text()).get("exit_code_by_key", {}).values():
                codes[code] += 1
        killed = sum(n for c, n in codes.items() if c in KILLED or c in TIMEOUT)
        survived = sum(n for c, n in codes.items() if c in SURVIVED or c in NO_TESTS)
        other = sum(codes.values()) - killed - survived
        total = killed + survived
        score = killed / total if total else float("nan")
        print(f"{args.module}: {killed} killed, {survived} survived (incl. {codes.get(33, 0)} without tests), "
              f"{other} other; score {100 * score:.1f} %")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
