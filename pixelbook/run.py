"""Run a chapter's experiment and write its results: ``python -m pixelbook.run <chapter> --scale medium``.

::

    python -m pixelbook.run 01_pixel_level_prediction --scale medium     # every arm and seed
    python -m pixelbook.run 1 --arm multitask --seed 0 1                 # some of them
    python -m pixelbook.run all --list                                   # what is done, stale, missing
    python -m pixelbook.run --page book/results.md                       # the "Results at a glance" page
    torchrun --nproc-per-node=4 -m pixelbook.run 1 --scale full          # four processes (GPUs), one run at a time

``make results [NB=notebooks/01_pixel_level_prediction.ipynb]`` calls it. Each (arm, seed) is one
results file ``results/<chapter>/<scale>-<arm>-seed<seed>.json``, written atomically as soon as that
run ends; a file that is already there with the same configuration hash and claims hash is skipped,
so an interrupted command resumes where it stopped (and an interrupted run resumes from its last
epoch). Arms that begin with the same epochs (``Experiment.shared_prefix``) train them once per seed
when the checkout is clean: the later arms start from the first one's state (see
:func:`pixelbook.experiments.record_run`). ``--force`` reruns anyway. When every run a claim needs is present, the claims are evaluated
and printed. Progress bars go to stderr (``PIXELBOOK_PROGRESS=0`` hides the per-run bar).

Under ``torchrun`` the processes run each (arm, seed) together (:mod:`pixelbook.distributed`,
:func:`pixelbook.training.fit`): same global batch, same results up to rounding; rank 0 decides what
to run, prints, and writes the files, which record the world size. A failure then stops the whole
command (the processes must stay in step). A chapter may also be given as ``package.module:NAME``,
an :class:`~pixelbook.experiments.Experiment` defined outside the package.

Exit status: 0 when every requested run is present and up to date, 1 when a run failed, 2 for bad
arguments or an inconsistent torchrun setup.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
import traceback

from . import distributed, experiments, results
from .runtime import SCALES

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pixelbook.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("chapters", nargs="*", metavar="chapter",
                   help=f"notebook stem, notebook path or chapter number; 'all' for every one of {experiments.names()}")
    p.add_argument("--scale", default="medium", help=f"one of {', '.join(SCALES)} (default: medium)")
    p.add_argument("--arm", action="extend", nargs="+", default=None, metavar="ARM",
                   help="only these arms (one chapter only); default: all")
    p.add_argument("--seed", action="extend", nargs="+", default=None, metavar="SEED",
                   help="only these seeds (of the scale's seeds); default: all")
    p.add_argument("--device", default="auto",
                   help="auto (default), cpu, cuda, cuda:N or mps; under torchrun: auto, cuda (each process takes "
                        "cuda:LOCAL_RANK) or cpu")
    p.add_argument("--backend", default="auto", choices=("auto", "nccl", "gloo"),
                   help="torch.distributed backend under torchrun (default: nccl on GPUs, gloo on CPUs)")
    p.add_argument("--micro-batch", type=int, default=None, metavar="N", dest="micro_batch",
                   help="at most N samples per forward pass in each process; the rest of the batch is accumulated "
                        "(the global batch stays the config's batch_size)")
    p.add_argument("--find-unused-parameters", action="store_true",
                   help="DistributedDataParallel's find_unused_parameters (a model with parameters unused in a step)")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="results folder (default: PIXELBOOK_RESULTS, else results/ of the repository)")
    p.add_argument("--force", action="store_true", help="rerun runs whose results are up to date")
    p.add_argument("--list", action="store_true", help="print each run's status and the claims; run nothing")
    p.add_argument("--page", default=None, metavar="FILE",
                   help="write the 'Results at a glance' page (markdown) to FILE after the runs")
    return p


def _parse_seeds(values, parser) -> list[int] | None:
    if values is None:
        return None
    seeds = []
    for v in values:
        try:
            seeds.append(int(v))
        except ValueError:
            parser.error(f"--seed: expected integers, got {v!r}")
    return seeds


def _plan(args, parser) -> list[tuple]:
    """``[(experiment, arm, seed)]`` for the requested runs; argument errors exit with status 2."""
    if args.scale not in SCALES:
        parser.error(f"--scale: expected one of {', '.join(SCALES)}, got {args.scale!r}")
    if args.micro_batch is not None and args.micro_batch < 1:
        parser.error(f"--micro-batch: expected an integer >= 1, got {args.micro_batch}")
    stems = []
    for name in args.chapters:
        if name == "all":
            stems += experiments.names()
            continue
        try:
            stems.append(name if ":" in name else experiments._stem(name))
        except ValueError as exc:
            parser.error(str(exc).replace("`chapter`", "chapter"))
    stems = list(dict.fromkeys(stems))
    if args.arm and len(stems) != 1:
        parser.error(f"--arm: give exactly one chapter with --arm, got {len(stems)} ({', '.join(stems) or 'none'})")
    seeds_wanted = _parse_seeds(args.seed, parser)
    plan = []
    for stem in stems:
        exp = _experiment(stem, parser)
        stem = exp.chapter
        if args.scale not in exp.seeds:
            parser.error(f"--scale: {stem} has no {args.scale!r} configuration; it runs at {', '.join(sorted(exp.seeds))}")
        arm_names = [a.name for a in exp.arms]
        run_names = [a.name for a in exp.arms_for(args.scale)]
        for arm in args.arm or []:
            if arm not in arm_names:
                parser.error(f"--arm: {arm!r} is not an arm of {stem}; arms: {', '.join(arm_names)}")
            if arm not in run_names:
                parser.error(f"--arm: {stem} does not run {arm!r} at scale {args.scale}: "
                             f"{exp.skip_arms[args.scale][arm]}")
        seeds = exp.seeds_for(args.scale)
        for s in seeds_wanted or []:
            if s not in seeds:
                parser.error(f"--seed: {s} is not one of the {args.scale} seeds of {stem}: {list(seeds)}")
        for seed in seeds_wanted or seeds:  # seeds outside: the arms of one seed share its data (built once)
            for arm in args.arm or run_names:
                plan.append((exp, arm, seed))
    return plan


def _experiment(name: str, parser) -> "experiments.Experiment":
    """A registered chapter's experiment, or ``module:NAME``'s (an Experiment defined elsewhere)."""
    if ":" not in name:
        return experiments.get(name)
    module, _, attr = name.partition(":")
    try:
        exp = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        parser.error(f"chapter: cannot load {name!r} ({type(exc).__name__}: {exc})")
    if not isinstance(exp, experiments.Experiment):
        parser.error(f"chapter: {name!r} is a {type(exp).__name__}, expected a pixelbook.experiments.Experiment")
    return exp


def _claims_report(exp, root, out, scale: str) -> None:
    for claim in (c for c in exp.claims if c.scale == scale):
        try:
            outcome = results.evaluate_claim(claim, results.load_results(exp.chapter, claim.scale, root))
        except (FileNotFoundError, ValueError, KeyError) as exc:
            print(f"[{claim.id}] not evaluated: {exc}", file=out)
            continue
        print(outcome, file=out)
    for claim in (c for c in exp.within_arm_claims if getattr(c, "scale", "medium") == scale):
        try:
            outcome = claim.evaluate(results.load_results(exp.chapter, scale, root))
        except (FileNotFoundError, ValueError, KeyError) as exc:
            print(f"[{claim.id}] not evaluated: {exc}", file=out)
            continue
        print(outcome, file=out)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.chapters and not args.page:
        parser.error("give a chapter (or 'all'), or --page FILE")
    plan = _plan(args, parser)
    try:
        ctx = distributed.setup(args.device, args.backend)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return _main(args, argv, plan, ctx)
    finally:
        distributed.teardown()


def _main(args, argv, plan, ctx) -> int:
    root = results.results_root(args.results)
    main_process = ctx.is_main
    # Only rank 0 prints; the others write to nowhere (their errors still reach stderr).
    out = sys.stdout if main_process else open(os.devnull, "w")  # noqa: SIM115 - closed below
    with contextlib.ExitStack() as stack:
        if not main_process:
            stack.callback(out.close)
        statuses = None
        if main_process:  # rank 0's results folder decides, so the processes agree on the runs to do
            statuses = [experiments.result_status(exp, arm, seed, args.scale, root) for exp, arm, seed in plan]
        statuses = [(exp, arm, seed, st) for (exp, arm, seed), st in zip(plan, distributed.broadcast_object(statuses))]
        if args.list:
            for exp, arm, seed, status in statuses:
                print(f"{exp.chapter}  {args.scale}-{arm}-seed{seed}: {status}", file=out)
            if main_process:
                for exp in dict.fromkeys(e for e, *_ in plan):
                    _claims_report(exp, root, out, args.scale)
            return 0

        todo = [(e, a, s, st) for e, a, s, st in statuses if args.force or st != "up to date"]
        skipped = len(statuses) - len(todo)
        if plan:
            where = f"; {ctx.world_size} processes ({ctx.backend}, {ctx.device.type})" if ctx.world_size > 1 else ""
            print(f"{len(plan)} run(s) at scale {args.scale}: {len(todo)} to run, {skipped} up to date (skipped); "
                  f"results in {root}{where}", file=out, flush=True)
        failures = 0
        if todo:
            from tqdm.auto import tqdm

            command = (distributed.torchrun_command(ctx) + " -m pixelbook.run " if ctx.world_size > 1
                       else "python -m pixelbook.run ") + " ".join(sys.argv[1:] if argv is None else argv)
            bar = tqdm(todo, desc="runs", unit="run", file=sys.stderr,
                       disable=os.environ.get("PIXELBOOK_PROGRESS") == "0" or not main_process)
            for exp, arm, seed, status in bar:
                bar.set_postfix_str(f"{exp.chapter} {arm} seed {seed}")
                t0 = time.time()
                try:
                    path = experiments.record_run(exp, arm, seed, args.scale, device=ctx.device, root=root,
                                                  command=command, micro_batch_size=args.micro_batch,
                                                  find_unused_parameters=args.find_unused_parameters)
                except KeyboardInterrupt:
                    raise
                except Exception:  # noqa: BLE001 - report, go on with the other runs, exit 1 at the end
                    failures += 1
                    who = f" (process {ctx.rank} of {ctx.world_size})" if ctx.world_size > 1 else ""
                    print(f"FAILED {exp.chapter} {arm} seed {seed}{who}:\n{traceback.format_exc()}", file=sys.stderr,
                          flush=True)
                    if ctx.world_size > 1:  # the others wait for this process: stop all (torchrun ends them)
                        bar.close()
                        return 1
                    continue
                was = "" if status == "missing" else f" (was {status})"
                print(f"wrote {path} in {time.time() - t0:.0f} s{was}", file=out, flush=True)
            bar.close()
        if main_process:
            for exp in dict.fromkeys(e for e, *_ in plan):
                _claims_report(exp, root, out, args.scale)
            if args.page:
                with open(args.page, "w", encoding="utf-8") as f:
                    f.write(results.glance_markdown(root))
                print(f"wrote {args.page}", file=out)
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
