"""The committed results (``results/<chapter>/*.json``): up to date with the code, complete, replayable.

A results file counts only if the current code still describes the run it records (the config
hash recomputed from ``pixelbook.experiments`` equals the recorded one), the claims it was run
under are the claims in the code today (the claims hash), and the start of its training history is
what the code produces: one seed of one arm per chapter is replayed (``pixelbook.experiments.replay``)
and its per-step losses must match the record within ``REPLAY_RTOL`` (the tolerance is justified
where it is defined). The "Results at a glance" page must be what the results generate.
"""

import re
from pathlib import Path

import pytest

from pixelbook import experiments, results
from pixelbook.experiments import REPLAY_ATOL, REPLAY_RTOL

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
PAGE = ROOT / "book" / "results.md"
FILES = sorted(RESULTS.glob("*/*.json"))
CHAPTERS = sorted({p.parent.name for p in FILES})
NAME_RE = re.compile(r"^(smoke|small|medium|full)-([a-z][a-z0-9_]*)-seed(\d+)\.json$")


def _rerun(stem: str, scale: str = "medium") -> str:
    return f"`make results NB=notebooks/{stem}.ipynb` (python -m pixelbook.run {stem} --scale {scale})"


def _none(what):
    return [pytest.param(None, marks=pytest.mark.skip(reason=f"no {what} committed yet"))]


@pytest.mark.parametrize("name", experiments.names() or _none("experiments"))
def test_registered_experiment_is_well_declared(name):
    exp = experiments.get(name)
    exp.validate()
    # the key is the chapter's notebook stem (the notebook may come after the experiment)
    assert re.fullmatch(r"\d\d_[a-z0-9_]+", name), f"{name}: expected a notebook stem such as 01_pixel_level_prediction"
    assert len(exp.seeds_for("medium")) >= 3, f"{name}: `medium` needs at least 3 seeds per arm"
    assert exp.claims, f"{name}: an experiment states its claims before it runs"
    for scale in exp.seeds:  # every config can be built and hashed at every declared scale
        for arm in exp.arms_for(scale):
            exp.run_config(arm.name, exp.seeds_for(scale)[0], scale)


@pytest.mark.parametrize("path", FILES or _none("results"), ids=lambda p: f"{p.parent.name}/{p.name}" if p else "none")
def test_results_file_is_up_to_date(path):
    stem = path.parent.name
    assert stem in experiments.names(), f"{path}: no experiment is registered for {stem}; delete the folder"
    m = NAME_RE.match(path.name)
    assert m, f"{path.name}: expected <scale>-<arm>-seed<N>.json"
    record = results.read_result(path)
    scale, arm, seed = m.group(1), m.group(2), int(m.group(3))
    assert (record["chapter"], record["scale"], record["arm"], record["seed"]) == (stem, scale, arm, seed)
    exp = experiments.get(stem)
    assert arm in [a.name for a in exp.arms_for(scale)], (
        f"{path}: {arm!r} is no longer an arm of {stem} at {scale}; delete the file")
    assert seed in exp.seeds_for(scale), f"{path}: seed {seed} is not a {scale} seed of {stem}; delete the file"
    config = exp.run_config(arm, seed, scale)
    assert record["config_hash"] == config.hash, (
        f"{path} is stale: the code now describes this run differently (hash {config.hash}, recorded "
        f"{record['config_hash']}); rerun {_rerun(stem, scale)}")
    assert record["config"] == config.to_dict()
    assert record["claims_hash"] == exp.claims_hash(), (
        f"{path}: the claims of {stem} changed after this run (a margin, k, n, metric or arm): claims are fixed "
        f"before the experiment; restore them, or rerun {_rerun(stem, scale)}")
    prov = record["provenance"]
    assert prov["git_commit"] and prov["git_dirty"] is False, (
        f"{path} was written from a working tree with uncommitted changes: commit, then rerun {_rerun(stem, scale)}")
    if config.train is not None:
        assert len(record["history"]) == config.train.epochs and all(h["step_loss"] for h in record["history"])


@pytest.mark.parametrize("stem", CHAPTERS or _none("results"))
def test_results_are_complete(stem):
    exp = experiments.get(stem)
    scales = {NAME_RE.match(p.name).group(1) for p in FILES if p.parent.name == stem and NAME_RE.match(p.name)}
    for scale in scales:
        want = {f"{scale}-{a.name}-seed{s}.json" for a in exp.arms_for(scale) for s in exp.seeds_for(scale)}
        have = {p.name for p in (RESULTS / stem).glob(f"{scale}-*.json")}
        assert want - have == set(), f"{stem}: missing {sorted(want - have)}; run {_rerun(stem, scale)}"


@pytest.mark.parametrize("stem", CHAPTERS or _none("results"))
def test_claims_can_be_evaluated(stem):
    exp = experiments.get(stem)
    for outcome in results.evaluate_claims(exp):
        assert outcome.n == outcome.claim.n


@pytest.mark.slow  # one epoch of one medium run per chapter: ~40 s each on the 2-core CPU
@pytest.mark.parametrize("stem", CHAPTERS or _none("results"))
def test_replay_of_one_run_matches_its_recorded_history(stem):
    exp = experiments.get(stem)
    seed = exp.seeds_for("medium")[0]
    arm = exp.replay_arm or next(a.name for a in exp.arms if exp.run_config(a.name, seed, "medium").train is not None)
    record = results.read_result(results.result_path(stem, "medium", arm, seed, RESULTS))
    out = experiments.replay(exp, record, device="cpu")
    print(f"{stem} {arm} seed {seed}: {out}")
    assert out.matches(REPLAY_RTOL, REPLAY_ATOL), (
        f"{stem} {arm} seed {seed}: the first {out.steps} steps of the recorded history are not what the code "
        f"produces ({out}); if the code changed on purpose, rerun {_rerun(stem)}")


def test_results_page_is_generated_from_the_results():
    assert PAGE.exists(), "book/results.md is missing: run `python -m pixelbook.run --page book/results.md`"
    assert PAGE.read_text(encoding="utf-8") == results.glance_markdown(RESULTS), (
        "book/results.md differs from what the results and claims generate: run "
        "`python -m pixelbook.run --page book/results.md` (never edit it by hand)")


def test_results_page_reports_every_within_arm_claim(tmp_path):
    """Claims about one arm (Chapter 6's ``within_arm_claims``) get a row too: its per-seed values, wins and
    verdict as the claim evaluates them on the committed results; "not run yet" without results."""
    with_claims = [n for n in experiments.names() if experiments.get(n).within_arm_claims]
    assert with_claims, "no experiment declares a within-arm claim any more: drop this test"
    page, empty = results.glance_markdown(RESULTS), results.glance_markdown(tmp_path)
    for stem in with_claims:
        exp = experiments.get(stem)
        for claim in exp.within_arm_claims:
            rows = [line for line in page.splitlines() if claim.statement in line]
            assert len(rows) == 1, f"{claim.id}: expected one row on the page, found {len(rows)}"
            row = rows[0]
            assert f"`{claim.metric}` of {claim.arm} above {claim.threshold:g}, ≥ {claim.k} of {claim.n} seeds" in row
            out = claim.evaluate(results.load_results(stem, "medium", RESULTS))
            assert "per seed " + ", ".join(format(v, ".3f") for v in out.values) in row
            verdict = "**holds**" if out.holds else "**does not hold**"
            assert f"{verdict} (above {claim.threshold:g} on {out.wins} of {len(out.values)} seeds (needs {claim.k}))" in row
            assert [line for line in empty.splitlines() if claim.statement in line][0].count("not run yet") == 1


def test_results_folder_holds_only_results_files():
    if not RESULTS.exists():
        pytest.skip("no results committed yet")
    stray = [str(p.relative_to(RESULTS)) for p in RESULTS.rglob("*")
             if p.is_file() and not (p.parent.parent == RESULTS and NAME_RE.match(p.name))]
    assert stray == [], f"results/ holds files that `make results` does not write: {stray}"
