"""The one entry point of every paper runner: `python -m reproduce.<key> --profile demo`.

A paper fills in an `Experiment` (its profiles, its own options, what one cell computes, its claims, its
figures) and calls `main(EXPERIMENT)`. The flow is the same for all five: resolve the profile and the
configuration, select the grid (--only) and check the request, claim the output folder (refusing one that
holds another configuration), run this shard's cells (or spread them over --jobs processes), merge the
finished cells of this grid into tables, then draw the figures and write report.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import tfadv
from tfadv.experiments import atomic, grid, identity, jobs, machine, report, store, verdicts
from tfadv.experiments.run import Run
from tfadv.experiments.spec import PROFILES, Experiment, Tables
from tfadv.experiments.store import ConfigurationError


def parser(experiment: Experiment) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m reproduce.{experiment.key}", description=experiment.description or experiment.title,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        epilog="Results: OUT/results.csv (tidy rows), OUT/*.png, OUT/report.md, OUT/config.json (the configuration "
               "the folder belongs to) and OUT/cells/ (one file per finished cell: a killed run resumes).")
    p.add_argument("--profile", choices=PROFILES, default="paper",
                   help="paper: the paper's protocol (GPU, downloads); demo: the same code on scikit-learn's digits, "
                        "minutes on a CPU, offline; smoke: tiny shapes and few steps, a wiring check for the tests (1 to 3 "
                        "CPU-minutes; its numbers mean nothing) (default: %(default)s)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help=f"output folder (default: results/{experiment.key}/<profile>); it holds one configuration")
    p.add_argument("--seed", type=_seed, default=0, help="base random seed of the run, >= 0 (default: %(default)s)")
    p.add_argument("--shard", type=_shard, default=None, metavar="i/n",
                   help="run only shard i of n (0-based); run the n shards into one --out, or into several and "
                        "--merge them (with --finish for the cells that read cells of several shards)")
    p.add_argument("--only", action="append", default=None, metavar="COORDINATE=V[,V...]",
                   help="run only the cells whose coordinate has one of the values, and the cells they need; repeat "
                        "to narrow further (e.g. --only method=fast --only epochs=15,30). The cells keep their "
                        "identity, and the report says the grid was narrowed")
    p.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                   help="run the grid in N processes, each taking the next cell (one per GPU, or a share of the CPU "
                        "cores each), and merge them (default: one per GPU, else as many as the grid and the cores "
                        "allow; smoke: 1)")
    p.add_argument("--threads", type=_threads, default=None, metavar="T",
                   help="TensorFlow CPU threads of each process that runs cells (default: "
                        f"{jobs.CPU_THREADS_PER_CELL} on a CPU-only machine, whatever --jobs is, since on a CPU a "
                        "trained cell's numbers depend on it; with GPUs, TensorFlow's default); recorded per cell")
    p.add_argument("--merge", nargs="*", default=None, metavar="DIR",
                   help="run nothing: merge the finished cells of --out and of these shard folders (none: --out "
                        "alone), then report; the report says how many of the grid's cells no folder has "
                        "finished, and the command that computes them (--finish)")
    p.add_argument("--finish", action="store_true",
                   help="with --merge: first compute, into --out, the grid's cells that no folder has finished, "
                        "reading the finished cells and artifacts of the --merge folders too (a cell that reads "
                        "other cells' artifacts, e.g. a transfer cell, runs only where they are all finished)")
    p.add_argument("--limit", type=_jobs, default=None, metavar="N",
                   help="cap images, training steps and epochs at N: a quick check that a profile's code path runs "
                        "end to end (e.g. the paper profile on a CPU); its numbers are not the profile's")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="tensorflow-datasets data_dir (default: $TFDS_DATA_DIR, else the checkout's data/tfds, else "
                        "tfds' own default); see data/README.md")
    p.add_argument("--plan", action="store_true",
                   help="run nothing: print what the profile's grid asks of a GPU (cells, passes, counted FLOPs, "
                        "estimated GPU-hours)")
    p.add_argument("--keep-work", action="store_true", help="keep each finished cell's scratch folder OUT/work/<id>")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars or cell log")
    p.add_argument("--child-of-jobs", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--claims", default=None, help=argparse.SUPPRESS)  # a --jobs child: where it takes cells
    own = p.add_argument_group(f"{experiment.key} options")
    for option in experiment.options:
        kwargs = dict(help=option.help, default=option.default, dest=option.dest, action=option.action)
        if option.action == "store":
            kwargs.update(type=option.type, choices=option.choices)
        own.add_argument(option.flag, **kwargs)
    return p


def configuration(experiment: Experiment, profile_name: str, options: Mapping[str, Any], seed: int,
                  limit: int | None = None, threads: int | None = None) -> dict:
    """Everything that can change a cell's numbers (tfadv.experiments.identity), the CPU thread count
    (--threads, resolved) included."""
    identity_options = {o.dest: options[o.dest] for o in experiment.options if o.role == "identity"}
    return {"experiment": experiment.key, "version": experiment.version, "tfadv": tfadv.__version__,
            "code": identity.code_hashes(experiment.module or f"reproduce.{experiment.key}",
                                         experiment.cell_code_modules()),
            "profile": profile_name, "profile_settings": experiment.profiles[profile_name],
            "options": identity_options, "seed": seed, "limit": limit, "threads": threads}


def open_run(experiment: Experiment, args: argparse.Namespace, claim_folder: bool = True) -> Run:
    """The run of these arguments; with `claim_folder`, its output folder is checked and claimed."""
    from tfadv.datasets import default_data_dir

    profile = experiment.profiles[args.profile]
    options = {o.dest: getattr(args, o.dest) for o in experiment.options}
    for option in experiment.options:
        if option.profile_field and options[option.dest] is None:
            options[option.dest] = getattr(profile, option.profile_field)
    config = configuration(experiment, args.profile, options, args.seed, args.limit, jobs.cell_threads(args.threads))
    out = Path(args.out or os.path.join("results", experiment.key, args.profile))
    run = Run(experiment=experiment, profile_name=args.profile, profile=profile,
              options=options, seed=args.seed, limit=args.limit, only=tuple(args.only or ()), out=out,
              configuration=config, store=None, merge_dirs=[Path(d) for d in args.merge or []],
              data_dir=args.data_dir or default_data_dir(), show_progress=args.progress and not args.child_of_jobs,
              keep_work=args.keep_work)
    if claim_folder:
        run.store = claimed_store(run)
    return run


def claimed_store(run: Run) -> store.CellStore:
    """The run's output folder, checked and claimed; a line says so when it took over a folder of another
    configuration that had finished nothing."""
    cells = store.CellStore(run.out, run.configuration)
    if cells.replaced:
        shown = "; ".join(cells.replaced[:3]) + (f"; and {len(cells.replaced) - 3} more" if len(cells.replaced) > 3
                                                  else "")
        print(f"{run.experiment.key}: {run.out} held another configuration ({shown}) but no finished cell and no "
              "artifact; it now holds this run's", file=sys.stderr)
    return cells


def main(experiment: Experiment, argv: Sequence[str] | None = None) -> Tables:
    """Run, merge and report; returns the merged tables. Bad settings, missing data or weights, and
    folders of another configuration end the process with a message that names the problem."""
    args = parser(experiment).parse_args(argv)
    if args.child_of_jobs:
        jobs.end_with_parent()
    argv = sys.argv[1:] if argv is None else list(argv)
    args.threads = jobs.cell_threads(args.threads)
    if not jobs.use_threads(args.threads, child=args.child_of_jobs):
        print(f"{experiment.key}: TensorFlow already runs in this process, so its cells run on its "
              f"{machine.threads_in_effect()} CPU threads, not --threads {args.threads} (each cell records the "
              "count; start a fresh process to choose it)", file=sys.stderr)
    clock = machine.RunClock()
    if args.plan:
        return {"plan": _print_plan(experiment, args)}
    try:
        # Everything the arguments alone decide is checked before the folder is claimed: a refused request
        # leaves no config.json behind.
        run = open_run(experiment, args, claim_folder=False)
        whole = reported_grid(run)
        cells = grid.select_only(whole, run.only, run.needs)
        check_request(args, cells)
        for folder in run.merge_dirs:
            store.check_merge_folder(folder, run.configuration)
        run.store = claimed_store(run)
        if args.merge is None or args.finish:
            try:
                _run_shard(run, cells, args, argv)
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM to a --jobs parent: a sentence, not a traceback
                print(f"\n{experiment.key}: interrupted: {sum(run.finished(c) for c in cells)} of {len(cells)} cells "
                      "are finished and kept; run the same command again to compute the rest", file=sys.stderr)
                raise SystemExit(130) from None
        if args.child_of_jobs:
            return {}  # the parent merges and reports
        tables = store.merge(run.out, run.configuration, run.merge_dirs, keys=grid_keys(whole))
    except _user_errors() as e:
        raise SystemExit(f"{experiment.key}: {e}") from None
    to_finish = finishing_advice(run, cells, argv) if args.merge is not None else None
    if to_finish:
        print(f"{experiment.key}: {to_finish}", file=sys.stderr)
    write_outputs(run, whole, tables, clock, to_finish=to_finish)
    return tables


def remove_stale_figures(out: Path, drawn: Sequence[str]) -> None:
    """Delete the folder's figures that this report did not draw: one an earlier report drew (before a rerun
    narrowed to --norms linf, say) would sit beside this report and show what its tables leave out."""
    for path in sorted(out.glob("*.png")):
        if path.name not in drawn:
            path.unlink()
            print(f"{out}: removed {path.name}, an earlier report's figure that this report does not draw",
                  file=sys.stderr)


def reported_grid(run: Run) -> list[dict]:
    """The experiment's grid under the run's profile and options (a paper's own selections, such as --seeds,
    included): the grid its settings describe, whose finished cells its tables, figures and verdicts cover.
    --only and --shard choose which of its cells a run computes, not what its report covers (a selection adds
    to the folder of the whole grid, and the report says which cells are missing)."""
    cells = list(run.experiment.grid(run))
    grid.check_unique(cells)
    return cells


def selected_grid(run: Run) -> list[dict]:
    """The experiment's grid narrowed by --only (with the cells the chosen ones need)."""
    return grid.select_only(reported_grid(run), run.only, run.needs)


def grid_keys(cells: Sequence[dict]) -> set[str]:
    """The keys of a grid's cells."""
    return {identity.cell_key(c) for c in cells}


def check_request(args: argparse.Namespace, cells: Sequence[dict]) -> None:
    """Refuse what cannot be meant: --finish without --merge, a shard of a run that holds no cell."""
    if args.finish and args.merge is None:
        raise ConfigurationError("--finish completes a --merge (it computes the cells no --merge folder has "
                                 "finished); without --merge a run computes every unfinished cell anyway: drop "
                                 "--finish, or add --merge with the shard folders")
    running = args.merge is None or args.finish
    if running and args.shard is not None and not grid.select_shard(cells, args.shard):
        # An error, not a quiet success: a shard that does nothing is a miscounted split (a job array sized
        # for another grid), and a scheduler would count it done.
        i, n = args.shard
        raise ConfigurationError(f"shard {i}/{n} is empty: the grid has {len(cells)} cells, so shards "
                                 f"{len(cells)} to {n - 1} of {n} hold none; split it into at most {len(cells)} "
                                 "shards")


def finishing_advice(run: Run, cells: Sequence[dict], argv: Sequence[str]) -> str | None:
    """After a --merge: how many of this run's `cells` (its grid, narrowed by --only) no folder has finished,
    and the command that computes them into --out (--finish); None when every cell is finished."""
    unfinished = [c for c in cells if not run.finished(c)]
    if not unfinished:
        return None
    reading = sum(bool(run.needs(c)) for c in unfinished)
    module = run.experiment.module or f"reproduce.{run.experiment.key}"
    command = shlex.join(["python", "-m", module, *argv, *([] if "--finish" in argv else ["--finish"])])
    count = f"{len(unfinished)} of the {len(cells)} cells of this run {'is' if len(unfinished) == 1 else 'are'}"
    why = (f" ({reading} of them read other cells' artifacts, so they run only where all of those are finished, "
           "which no shard folder alone may hold)" if reading else "")
    return (f"{count} finished in no folder{why}. This computes them into {run.out}, reading the finished cells "
            f"and artifacts of every folder: `{command}`")


def _run_shard(run: Run, cells: Sequence[dict], args: argparse.Namespace, argv: list[str]) -> None:
    """This invocation's cells: its --shard, spread over --jobs processes where that pays."""
    mine = grid.select_shard(cells, args.shard)
    if args.child_of_jobs:
        mine = [c for c in mine if not run.whole_machine(c)]
    parallel = [c for c in mine if not run.whole_machine(c)]
    count = jobs.job_count(args.jobs, args.profile, [c for c in parallel if not run.finished(c)], args.threads)
    if count > 1 and args.shard is None and not args.child_of_jobs:
        jobs.run_parallel(run, parallel, count, argv, args.threads)
        mine = [c for c in mine if not run.finished(c)]  # not reported as "already finished" by the children
    # A --jobs child takes its cells one by one; the parent, after its children, runs the cells that need the
    # whole machine or still wait for others.
    grid.run_cells(run, mine, claims=Path(args.claims) if args.claims else None)


def _print_plan(experiment: Experiment, args: argparse.Namespace):
    from tfadv.experiments import plan

    if experiment.cost is None:
        raise SystemExit(f"{experiment.key}: this experiment does not say what its cells cost; --plan cannot estimate it")
    run = open_run(experiment, args, claim_folder=False)
    cells = grid.select_shard(selected_grid(run), args.shard)
    table = plan.plan(run, cells)
    print(plan.describe(table, run))
    return table


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix (a setting, a folder, data or weights not found): a message, not
    a traceback."""
    from tfadv.datasets.imagenet_v2 import CorruptImageError
    from tfadv.datasets.tfds_data import DatasetUnavailableError
    from tfadv.models.imagenet import WeightsUnavailableError

    return ConfigurationError, CorruptImageError, DatasetUnavailableError, WeightsUnavailableError


def write_outputs(run: Run, cells: Sequence[dict], tables: Tables, clock: machine.RunClock,
                  to_finish: str | None = None) -> None:
    """Figures and report.md from the merged tables of the grid `cells` (reported_grid: of its finished cells
    only, as the report says); `to_finish` (after a --merge): how to compute the cells no folder has finished."""
    finished = sum(run.finished(c) for c in cells)
    if finished == 0:
        print(f"{run.experiment.key}: no finished cells yet in {run.out}: nothing to plot or report", file=sys.stderr)
        return
    partial = partial_run(run, cells, finished)
    experiment = run.experiment
    figures = experiment.figures(tables, run)
    remove_stale_figures(run.out, figures)
    sections = list(experiment.sections(tables, run))
    if figures:
        sections.append(("Figures", "\n\n".join(f"![{name}]({name})" for name in figures)))
    results = tables[store.MAIN_TABLE]
    computed_with = {"TensorFlow CPU threads per cell": threads_fact(results),
                     "devices and kernels per cell": kernels_fact(results),
                     "oneDNN below AVX-512": onednn_fact(results), "data per cell": data_fact(results),
                     "pretrained weights": weights_fact(results)}
    computed_with = {name: text for name, text in computed_with.items() if text is not None}
    keys = grid_keys(cells)
    times = store.cell_times(run.folders, keys)
    atomic.write_csv(times, run.out / "cell_times.csv")
    outside = len(store.finished_keys(run.folders) - keys)
    facts = clock.facts(**{"cells finished": f"{finished} of {len(cells)}" + (
        "" if finished == len(cells) else " (the tables and figures cover the finished ones)"),
        **({"cells outside this grid": outside_fact(outside)} if outside else {}),
        **({"compute": compute_fact(times)} if len(times) else {}), **computed_with})
    warnings = [f"{name}: {text.removeprefix('WARNING: ')}" for name, text in computed_with.items()
                if text.startswith(("MIXED", "WARNING"))]
    raised = store.cell_warnings(run.folders, keys)
    atomic.write_csv(raised, run.out / "cell_warnings.csv")
    if len(raised):
        warnings.append(warnings_fact(raised, finished))
    judged = experiment.judge(tables, run)
    if partial:
        warnings.insert(0, f"PARTIAL RUN: {'; '.join(partial)}. So every verdict below is inconclusive and says "
                           "what its rule gave on the cells at hand; run the whole grid (the same command without "
                           "the selection or the cap, or every shard and then --merge) for the profile's verdicts.")
        judged = [verdicts.provisional(v, "partial run (see the warning above)") for v in judged]
    if to_finish:
        warnings.insert(1 if partial else 0, to_finish)
    text = report.render(title=experiment.title, key=experiment.key, profile=run.profile_name,
                         fingerprint=run.store.fingerprint, verdicts=judged,
                         sections=sections, settings=experiment.settings(run), run_facts=facts, warnings=warnings)
    atomic.write_text(run.out / "report.md", text)
    print(f"{experiment.key}: wrote {run.out / 'report.md'}, {len(figures)} figure(s) and "
          f"{', '.join(f'{name}.csv' for name in [*tables, 'cell_times', 'cell_warnings'])} in {run.out}",
          file=sys.stderr)


def partial_run(run: Run, cells: Sequence[dict], finished: int) -> list[str]:
    """How this run's report (over the grid `cells`, `finished` of them done) falls short of the profile's
    whole grid, if it does: its verdicts cannot be the profile's."""
    partial = []
    selected = _narrowing_selection(run, cells)
    if finished < len(cells):
        partial.append(f"only {finished} of the grid's {len(cells)} cells have finished (one shard, an --only "
                       "selection, or a run not yet done), and a rule on fewer cells can come out otherwise")
        if run.only and len(selected_grid(run)) < len(cells):
            selected.append(" ".join(f"--only {text}" for text in run.only))
    if selected:
        partial.append(f"{', '.join(selected)} selected part of the grid")
    if run.limit is not None:
        partial.append(f"--limit {run.limit} capped images, training steps and epochs (a wiring check)")
    return partial


def _narrowing_selection(run: Run, cells: Sequence[dict]) -> list[str]:
    """The paper's selection options (--seeds, ...) of a run whose grid `cells` (reported_grid) lacks cells
    of the profile's own grid (the grid with every selection at the profile's value); a selection that adds
    cells narrows nothing."""
    selection = [o for o in run.experiment.options if o.role == "selection"]
    own = {o.dest: getattr(run.profile, o.profile_field) if o.profile_field else o.default for o in selection}
    changed = [o for o in selection if run.options.get(o.dest) != own[o.dest]]
    if not changed:
        return []
    whole = reported_grid(dataclasses.replace(run, options={**run.options, **own}))
    chosen = {identity.cell_key(c) for c in cells}
    if {identity.cell_key(c) for c in whole} <= chosen:
        return []
    return [_as_given(o, run.options[o.dest]) for o in changed]


def _as_given(option: Any, value: Any) -> str:
    """An option as a command line would give it: `--opt a --opt b` (append), `--xs 1,2` (a parsed list)."""
    if option.action == "append":
        return " ".join(f"{option.flag} {v}" for v in value)
    shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return f"{option.flag} {shown}"


def outside_fact(count: int) -> str:
    """The folders' finished cells that this run's grid does not hold (an earlier run's wider selection)."""
    return (f"{count} finished cell(s) of this configuration outside this run's grid (a run with a wider "
            "selection, such as more seeds, computed them) are kept in cells/ and left out of the tables, "
            "figures and verdicts; the same selection as theirs reports them")


#: report.md quotes this many kinds of tfadv warning at most; cell_warnings.csv has every one.
QUOTED_WARNING_KINDS = 3


def warnings_fact(raised, finished: int) -> str:
    """What tfadv warned about while computing the cells (tfadv.validation.TfadvWarning): each kind of
    warning (its text with the numbers blanked out), most cells first, with how many cells raised it and
    its first text."""
    kinds = raised.assign(kind=raised["warning"].str.replace(r"\d[\d.e+-]*", "#", regex=True))
    grouped = kinds.groupby("kind", sort=False).agg(cells=(store.CELL_COLUMN, "nunique"),
                                                    cell=(store.CELL_COLUMN, "first"), text=("warning", "first"))
    grouped = grouped.sort_values("cells", ascending=False, kind="mergesort")
    quoted = [f"{row.cells} cell(s), e.g. {row.cell}: \"{row.text}\""
              for row in grouped.head(QUOTED_WARNING_KINDS).itertuples()]
    more = len(grouped) - QUOTED_WARNING_KINDS
    return (f"tfadv warned while computing {raised[store.CELL_COLUMN].nunique()} of the {finished} finished cells "
            f"(all in cell_warnings.csv): " + "; ".join(quoted) + (f"; and {more} more kind(s)" if more > 0 else ""))


def compute_fact(times) -> str:
    """What the finished cells cost, from each cell's recorded time (cell_times.csv)."""
    longest = times.loc[times["cpu_seconds"].idxmax()]
    return (f"{times['cpu_seconds'].sum() / 60:.1f} CPU-minutes in {len(times)} cells "
            f"({times['wall_seconds'].sum() / 60:.1f} minutes of their wall time, summed); the longest, "
            f"{longest[store.CELL_COLUMN]}, {longest['cpu_seconds'] / 60:.1f} CPU-minutes; per cell in cell_times.csv")


def threads_fact(results) -> str:
    """How many TensorFlow CPU threads computed the cells, and a warning if not the same for all."""
    return _computed_with_fact(results, store.THREADS_COLUMN, "{:g}", "the CPU thread count (TensorFlow splits "
                               "its reductions per thread)", "rerun them with one --threads")


def kernels_fact(results) -> str:
    """Which devices and kernels computed the cells (tfadv.experiments.machine.kernels), and a warning if not
    the same for all."""
    return _computed_with_fact(results, store.KERNELS_COLUMN, "{}", "the kernels (another CPU or GPU, oneDNN on or "
                               "off, or another TensorFlow rounds differently)", "rerun them on one kind of machine")


def onednn_fact(results) -> str | None:
    """A warning when cells ran oneDNN's kernels on an x86 CPU without AVX-512, else None."""
    per_cell = _recorded_per_cell(results, store.KERNELS_COLUMN)
    if per_cell is None:
        return None
    forced = int(per_cell.map(machine.onednn_below_avx512).sum())
    if not forced:
        return None
    return (f"WARNING: {forced} of {len(per_cell)} cells ran oneDNN's CPU kernels without AVX-512 "
            "(TF_ENABLE_ONEDNN_OPTS=1; TensorFlow leaves them off there). On such a CPU oneDNN's Conv2DBackpropFilter "
            "corrupted the heap (2026-12-05, TensorFlow 2.21; reproduce/__init__.py), which can change numbers "
            "without a crash: rerun these cells without TF_ENABLE_ONEDNN_OPTS=1 to rule it out")


def data_fact(results) -> str | None:
    """Which data the cells read (where they record it), and a warning if not the same for all."""
    per_cell = _recorded_per_cell(results, store.DATA_COLUMN)
    if per_cell is None:
        return None
    listed = _listing(per_cell)
    if per_cell.nunique() == 1:
        return listed
    return f"MIXED: {listed}. Cells that read different data are not comparable; rerun them on one copy of the data"


def weights_fact(results) -> str | None:
    """Which pretrained weights the cells' models had (where the cells record them), with a warning first
    when some are not the official files: the paper's numbers are the official models'."""
    per_cell = _recorded_per_cell(results, store.WEIGHTS_COLUMN)
    if per_cell is None:
        return None
    listed = _listing(per_cell)
    other = int(per_cell.str.startswith("NOT ").sum())
    if other:
        return (f"WARNING: {other} of {len(per_cell)} cells attacked models whose weights are not the official "
                f"files, so their numbers are not the paper's models': {listed}")
    return listed


def _computed_with_fact(results, column: str, shown: str, depends_on: str, remedy: str) -> str:
    if column not in results:
        return "not recorded (cells written by an older tfadv)"
    per_cell = results.groupby(store.CELL_COLUMN)[column].first()
    if per_cell.nunique(dropna=False) == 1:
        return f"{shown.format(per_cell.iloc[0])} (every cell)"
    return (f"MIXED: {_listing(per_cell, shown)}. A trained cell's numbers depend on {depends_on}, so these cells "
            f"are not bit-comparable; {remedy}")


def _recorded_per_cell(results, column: str):
    """Each cell's value of `column`, for the cells that record one (None if none does)."""
    if column not in results or results[column].isna().all():
        return None
    return results.dropna(subset=[column]).groupby(store.CELL_COLUMN)[column].first()


def _listing(per_cell, shown: str = "{}") -> str:
    """The distinct per-cell values in sorted order, each with its count: "value in n cells; ..."."""
    return "; ".join(f"{shown.format(value)} in {n} cells"
                     for value, n in per_cell.value_counts(dropna=False).sort_index().items())


def _shard(text: str) -> tuple[int, int]:
    try:
        return grid.parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _seed(text: str) -> int:
    # numpy, scikit-learn and TensorFlow take seeds >= 0 only: a negative one would fail inside the first cell.
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _threads(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 (0: TensorFlow's default), got {text!r}")
    return int(text)


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)
