"""Tests of tools/mutation.py's bookkeeping: mutant names, diffs and the list of equivalent mutants."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pixelbook_mutation_tool", ROOT / "tools" / "mutation.py")
mutation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutation)

DIFF = """--- mutants/pixelbook/rmi.py
+++ mutants/pixelbook/rmi.py
@@ -1,3 +1,3 @@
 def f(x):
-    return x + 1
+    return x - 1
"""


def test_function_of_plain_function_and_method():
    assert mutation.function_of("pixelbook.rmi.x_rmi_loss__mutmut_12") == "rmi_loss"
    assert mutation.function_of("pixelbook.rmi.x\u01c1RMILoss\u01c1forward__mutmut_1") == "RMILoss.forward"


def test_changed_lines_skips_the_file_headers():
    assert mutation.changed_lines(DIFF) == ("return x + 1", "return x - 1")


def _entry(**kw):
    e = dict(module="pixelbook/rmi.py", function="f", old="return x + 1", new="return x - 1", reason="r")
    e.update(kw)
    return e


def test_classify_matches_survivors_by_content_and_reports_bad_entries():
    mutants = {"pixelbook.rmi.x_f__mutmut_7": {"code": 0, "diff": DIFF},
               "pixelbook.rmi.x_g__mutmut_1": {"code": 1, "diff": DIFF.replace("def f", "def g")}}
    matched, problems = mutation.classify(mutants, [_entry()])
    assert matched == {"pixelbook.rmi.x_f__mutmut_7": "equivalent"} and problems == []
    matched, _ = mutation.classify(mutants, [_entry(kind="device")])
    assert matched == {"pixelbook.rmi.x_f__mutmut_7": "device"}
    # the same change in a killed mutant: the listing is wrong
    matched, problems = mutation.classify(mutants, [_entry(function="g")])
    assert matched == {} and problems[0].startswith("NOT EQUIVALENT")
    # a listing that no mutant matches any more
    matched, problems = mutation.classify(mutants, [_entry(new="return x * 1")])
    assert matched == {} and problems[0].startswith("stale")


def test_load_equivalent_filters_by_module_and_requires_a_reason(tmp_path):
    f = tmp_path / "eq.toml"
    f.write_text('[[equivalent]]\nmodule = "a.py"\nfunction = "f"\nold = "x"\nnew = "y"\nreason = "r"\n'
                 '[[equivalent]]\nmodule = "b.py"\nfunction = "f"\nold = "x"\nnew = "y"\nreason = "r"\n')
    assert [e["module"] for e in mutation.load_equivalent("a.py", f)] == ["a.py"]
    f.write_text('[[equivalent]]\nmodule = "a.py"\nfunction = "f"\nold = "x"\nnew = "y"\n')
    with pytest.raises(ValueError, match="lacks"):
        mutation.load_equivalent("a.py", f)


def test_the_committed_list_parses_and_every_entry_names_a_tracked_module():
    entries = mutation.load_equivalent_all()
    for e in entries:
        assert (ROOT / e["module"]).is_file(), e
        assert e["reason"].strip() and e.get("kind", "equivalent") in ("equivalent", "device"), e


def test_combine_scores_the_union_of_partial_reports(tmp_path, capsys):
    """Two --only runs of one module are scored together; a later report wins for a repeated key unless it
    did not run that mutant (mutmut lists every mutant of the module, those left out with code None)."""
    import json
    import sys
    first = {"pixelbook.rmi.x_f__mutmut_1": {"code": 1, "diff": DIFF},
             "pixelbook.rmi.x_f__mutmut_2": {"code": 0, "diff": DIFF}}
    second = {"pixelbook.rmi.x_g__mutmut_1": {"code": 0, "diff": DIFF},
              "pixelbook.rmi.x_f__mutmut_2": {"code": 1, "diff": DIFF},  # re-run after a new test
              "pixelbook.rmi.x_f__mutmut_1": {"code": None, "diff": DIFF}}  # not run by this --only job
    paths = []
    for i, rep in enumerate((first, second)):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(rep))
    argv = sys.argv
    sys.argv = ["mutation.py", "pixelbook/rmi.py", "--combine", *map(str, paths)]
    try:
        assert mutation.main() == 0
    finally:
        sys.argv = argv
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "3 mutants, 2 killed, 1 survived" in last
    assert "score 66.7 % raw" in last


def _mutation_targets() -> list[list[str]]:
    """The Makefile's MUTATION_TARGETS, one [module, test files...] list per quoted entry."""
    import re

    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(l for l in text.splitlines() if l.startswith("MUTATION_TARGETS"))
    return [entry.split() for entry in re.findall(r'"([^"]+)"', line)]


def test_make_mutation_covers_every_method_module_with_existing_test_files():
    targets = _mutation_targets()
    modules = [t[0] for t in targets]
    assert len(modules) == len(set(modules))
    # the method modules (their layers, losses and read-outs); generic models/metrics/data are not targets
    method = ["cas.py", "rmi.py", "meanshift.py", "multitask.py", "std/dynamics.py", "std/layers.py",
              "std/kernels.py", "levelset/neural_ode.py", "levelset/chan_vese.py", "levelset/evolution.py",
              "levelset/narrow_band.py", "gating/gumbel.py", "gating/pag.py", "gating/budget.py",
              "gating/pooling.py", "gating/nets.py", "filterflow/pff.py", "filterflow/multigrid.py",
              "filterflow/restoration.py"]
    assert sorted(modules) == sorted(f"pixelbook/{m}" for m in method)
    for module, *tests in targets:
        assert (ROOT / module).is_file(), module
        assert tests, f"{module} has no test files"
        for t in tests:
            assert (ROOT / t).is_file(), f"{module}: {t} does not exist"
    # the exact-value test files written against each module's mutants are part of its measurement
    exact = {"cas.py": "cas", "meanshift.py": "meanshift", "multitask.py": "multitask", "filterflow/pff.py": "filterflow",
             "filterflow/multigrid.py": "mgpff", **{f"gating/{m}.py": "gating" for m in ("gumbel", "pag", "budget",
                                                                                     "pooling", "nets")}}
    tests_of = {t[0]: t[1:] for t in targets}
    for module, stem in exact.items():
        assert f"tests/test_{stem}_exact.py" in tests_of[f"pixelbook/{module}"], module
    assert sorted(p.name for p in (ROOT / "tests").glob("test_*_exact.py")) == sorted(
        {f"test_{stem}_exact.py" for stem in exact.values()})
