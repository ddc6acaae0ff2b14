"""The ``metabench`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn


def _cmd_list(args: argparse.Namespace) -> int:
    import pandas as pd

    from metabench.registration import ENVS
    from metabench.tasks import family, split_hash, split_names, tasks

    rows = []
    for entry in ENVS:
        if args.filter and args.filter not in entry.id:
            continue
        family_name = type(family(entry.id)).__name__
        for split in split_names(entry.id):
            rows.append(
                {
                    "id": entry.id,
                    "family": family_name,
                    "split": split,
                    "tasks": len(tasks(entry.id, split)),
                    "steps": entry.max_episode_steps,
                    "sha256": split_hash(entry.id, split),
                }
            )
    if rows:
        print(pd.DataFrame(rows).to_markdown(index=False))
    from metabench.suites import SUITES, suite_split_hash

    suite_rows = [
        {
            "suite": name,
            "split": split,
            "envs": " ".join(s.ids(split)),
            "sha256": suite_split_hash(name, split),
        }
        for name, s in SUITES.items()
        if not args.filter or args.filter in name
        for split in ("train", "test")
    ]
    if suite_rows:
        print("\nTransfer suites (metabench/suites.py):\n")
        print(pd.DataFrame(suite_rows).to_markdown(index=False))
    if not rows and not suite_rows:
        from metabench.harness import UsageError

        raise UsageError(f"no env id or suite contains {args.filter!r}; `metabench list` shows them all")
    return 0


def _shown_path(path: str | Path) -> str:
    """``path`` relative to the working directory where it lies below it, else absolute."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _refuse_dirty_leaderboard(out: str | Path) -> None:
    """Records bound for the committed leaderboard must come from committed code: a record made from a
    checkout with uncommitted changes fails `make leaderboard-check`'s provenance check, so refuse
    before hours are spent rather than after."""
    from metabench.harness import UsageError, git_state

    root = Path(__file__).resolve().parent.parent
    try:
        Path(out).expanduser().resolve().relative_to(root / "leaderboards")
    except ValueError:
        return
    _, dirty = git_state()
    if dirty:
        raise UsageError(
            f"{out} is the committed leaderboard, but this checkout has uncommitted changes to tracked "
            "files (git status): its records would fail the provenance check; commit first, or run "
            "from a clean checkout (git worktree add) and copy the records"
        )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate an agent file on env ids and seeds at a tier; one record per (env id, seed)."""
    from metabench.harness import (
        UsageError,
        check_tier,
        check_unit_count,
        existing_ok,
        identity_clash,
        parse_seeds,
        prepare_units,
        run_units,
        stale_note,
    )
    from metabench.protocol import load_toml, parse_overrides
    from metabench.records import check_writable_dir, rerun_error_path

    seeds = parse_seeds(args.seeds)
    check_unit_count(len(seeds), len(set(args.env or ())) + len(set(getattr(args, "suite", None) or ())))
    check_tier(args.tier)
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    parallel = args.workers > 1 or bool(args.ray_address)
    if not args.env and not args.suite:
        raise UsageError(
            "pass --env ID (a task family) or --suite NAME (a transfer suite); see `metabench list`"
        )
    common: dict[str, Any] = {
        "config_toml": load_toml(args.config_file) if args.config_file else None,
        "config_overrides": parse_overrides(args.config),
        "tensorboard": args.tensorboard,
        "progress": not args.quiet and not parallel,
    }
    out = args.out or f"results/{args.tier}"
    _refuse_dirty_leaderboard(out)
    if args.isolate and args.suite:
        raise UsageError("--isolate runs task families (--env) only; run --suite without --isolate")
    units = (
        prepare_units(args.agent, args.env, args.tier, seeds, out, isolate=args.isolate, **common)
        if args.env
        else []
    )
    if args.suite:
        from metabench.suite_harness import prepare_suite_units

        units += prepare_suite_units(args.agent, args.suite, args.tier, seeds, out, **common)
    # A record of another tier or budget at a unit's path is another result, not this one's: refuse
    # before any work rather than skip it (wrong numbers) or replace it (a result lost).
    clashes = [] if args.force else [c for c in map(identity_clash, units) if c]
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise UsageError(
            f"{clashes[0]}{more}: give another --out (the default is results/<tier>) or --force to replace it"
        )
    todo = []
    for unit in units:
        if not args.force and existing_ok(unit.path, unit):
            note = stale_note(unit)
            failed_rerun = rerun_error_path(unit.path)
            if failed_rerun.is_file():
                note += f" (a failed rerun's error record is beside it: {_shown_path(failed_rerun)})"
            print(f"skip {unit.describe()}: {_shown_path(unit.path)} exists{note} (--force reruns it)")
        else:
            todo.append(unit)
    for folder in dict.fromkeys(u.path.parent for u in todo):  # before the run, not after it
        check_writable_dir(folder, "--out")

    written: list[Any] = []

    def report(result: Any) -> None:
        if result.path:
            written.append(result)
        if result.status == "ok":
            print(f"wrote {_shown_path(result.path)}", flush=True)
            return
        if not result.path:
            where = "no record written"
        elif Path(result.path) == rerun_error_path(result.unit.path):
            where = f"error record: {_shown_path(result.path)}, beside the ok record it did not replace"
        else:
            where = f"error record: {_shown_path(result.path)}"
        print(
            f"metabench: error: {result.unit.describe()} failed: {result.message} ({where})",
            file=sys.stderr,
            flush=True,
        )

    try:
        if parallel and todo:
            from metabench.parallel import run_units_ray

            results = run_units_ray(
                todo, workers=args.workers, address=args.ray_address, quiet=args.quiet, on_result=report
            )
        else:
            results = run_units(todo, on_result=report)
    except KeyboardInterrupt:
        sys.stdout.flush()
        print(f"metabench: interrupted: {len(written)} record(s) written, rerun to resume", file=sys.stderr)
        return 130
    failed = sum(r.status != "ok" for r in results)
    n_errors = sum(r.status != "ok" for r in written)
    if not args.quiet or failed:
        unwritten = len(results) - len(written)
        print(
            f"{len(written)} record(s) written ({len(written) - n_errors} ok, {n_errors} error), "
            f"{len(units) - len(todo)} skipped"
            + (f", {unwritten} failed without a record" if unwritten else ""),
            file=sys.stderr if failed else sys.stdout,
        )
    return 1 if failed else 0


def _cmd_show(args: argparse.Namespace) -> int:
    """Print one record's summary, or a one-line-per-record table of a records directory."""
    from metabench.records import (
        is_rerun_error,
        load_record,
        load_records,
        rerun_error_path,
        summary_table,
        summary_text,
    )

    path = Path(args.record)
    if path.is_dir():
        print(summary_table([(_shown_path(p), r) for p, r in load_records(path)]))
        return 0
    text = summary_text(load_record(path), _shown_path(path))
    beside = rerun_error_path(path)
    if is_rerun_error(path):
        ok = path.with_name(path.name.replace(".error.json", ".json"))
        text += f"\n\nnote       a failed rerun; the ok record {_shown_path(ok)} was kept, not replaced"
    elif beside.is_file():
        text += f"\n\nnote       a rerun of this unit failed; its error record is {_shown_path(beside)}"
    print(text)
    return 0


def _cmd_campaign(args: argparse.Namespace) -> int:
    from metabench.campaign import main as campaign_main
    from metabench.harness import parse_seeds

    return campaign_main(
        args.plan,
        jobs=args.jobs,
        commit=args.commit,
        dry_run=args.dry_run,
        background=args.background,
        stop=args.stop,
        only=args.only,
        seeds=parse_seeds(args.seeds) if args.seeds else (),
    )


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from metabench.harness import UsageError

    try:
        from metabench.leaderboard import main as leaderboard_main
    except ModuleNotFoundError as exc:
        if exc.name != "metabench.leaderboard":
            raise
        raise UsageError("metabench.leaderboard is not available in this installation") from exc
    return int(leaderboard_main(args.records_dir, args.out, args.check) or 0)


def _cmd_render(args: argparse.Namespace) -> int:
    """One frame of an env on a task, as a PNG (docs/img holds one per family)."""
    from metabench.docs import check_png_path, render_frame, write_png

    out = check_png_path(args.out)
    height, width = write_png(
        render_frame(args.env_id, args.task, args.split, args.steps, args.seed, args.camera),
        out,
        args.size or None,
    )
    print(f"wrote {_shown_path(out)} ({width}x{height})")
    return 0


def _cmd_docs(args: argparse.Namespace) -> int:
    """Regenerate docs/families.md and the family pictures, or check them (--check)."""
    from metabench.docs import write_docs

    problems = write_docs(args.out, pictures=not args.no_pictures, check=args.check)
    for problem in problems:
        print(f"metabench: error: {problem}", file=sys.stderr)
    if not args.check:
        print(f"wrote {_shown_path(Path(args.out) / 'families.md')}")
    return 1 if problems else 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (and a pointer to --help) instead of usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _user_errors() -> tuple[type[Exception], ...]:
    from metabench.docs import DocsError
    from metabench.harness import UsageError
    from metabench.protocol import AgentError
    from metabench.records import RecordError
    from metabench.tasks import TaskError

    return (AgentError, TaskError, UsageError, RecordError, DocsError)


def build_parser() -> argparse.ArgumentParser:
    import metabench

    parser = _Parser(prog="metabench", description="The metabench command line.")
    parser.add_argument("--version", action="version", version=f"metabench {metabench.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="ids, splits, split sizes and split hashes; transfer suites")
    p.add_argument("--filter", default="", help="only ids containing this text")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "evaluate",
        help="meta-train and meta-test an agent file; one JSON record per (env id, seed)",
        description="Meta-train AGENT on each env id's train split within the tier's budget, meta-test it "
        "on every test split and a fixed sample of train tasks, and write one record per (env id, seed) "
        "to OUT/<env id>/<agent>/seed<N>.json. A unit whose ok record exists is skipped unless --force; "
        "an ok record there of another tier or budget stops the command before any run (give another "
        "--out, or --force to replace it). A failed --force rerun never replaces an ok record: its error "
        "record goes beside it, seed<N>.error.json. At most 1000 units a command; Ctrl-C stops it, and a "
        "rerun resumes it.",
    )
    p.add_argument("agent", help="agent file (agents/rl2.py, ~/my_agent.py) or module name")
    p.add_argument("--env", action="append", default=[], metavar="ID", help="env id; repeat for several")
    p.add_argument(
        "--suite",
        action="append",
        default=[],
        metavar="NAME",
        help="transfer suite (metabench list); repeatable",
    )
    p.add_argument("--tier", required=True, help="smoke, ci or standard (sets the meta-training budget)")
    p.add_argument("--seeds", default="0", help="seeds: a range 0-4, a list 0,2,5, or one seed (default 0)")
    p.add_argument("--workers", type=int, default=1, help="run N units at once on a local Ray instance")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="run the units on this Ray cluster")
    p.add_argument("--out", default=None, metavar="DIR", help="records directory (default results/<tier>)")
    p.add_argument("--force", action="store_true", help="rerun units whose ok record exists")
    p.add_argument(
        "--config", action="append", default=[], metavar="KEY=VALUE", help="agent config value; repeatable"
    )
    p.add_argument("--config-file", default=None, metavar="TOML", help="agent config values from TOML")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary (for CI)")
    p.add_argument("--tensorboard", default=None, metavar="DIR", help="write meta-training curves here")
    p.add_argument(
        "--isolate",
        action="store_true",
        help="run every env in a separate process; the agent gets proxies only (docs/trust.md)",
    )
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("show", help="summarise a record (or every record under a directory)")
    p.add_argument("record", help="a record JSON file, or a records directory")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("leaderboard", help="tables and plots from a records directory")
    p.add_argument("records_dir", help="records directory (e.g. results/ci)")
    p.add_argument("-o", "--out", required=True, metavar="OUT_DIR", help="where tables and plots go")
    p.add_argument("--check", action="store_true", help="fail if the files in OUT_DIR would change")
    p.set_defaults(func=_cmd_leaderboard)

    p = sub.add_parser(
        "campaign",
        help="run the missing units of a leaderboard's plan, a few at a time, resumably",
        description="Run every unit of PLAN (e.g. leaderboards/ci/campaign.toml) without an ok record made "
        "by the current code, JOBS at a time; stop it at any point and rerun to resume.",
    )
    p.add_argument("plan", help="campaign plan TOML (leaderboards/ci/campaign.toml)")
    p.add_argument("--jobs", type=int, default=2, help="units at once, each in its own process (default 2)")
    p.add_argument("--commit", action="store_true", help="commit each record with the re-rendered tables")
    p.add_argument("--dry-run", action="store_true", help="list the units to run and estimate core-hours")
    p.add_argument("--background", action="store_true", help="detach; log and pid file beside the plan")
    p.add_argument("--stop", action="store_true", help="stop a campaign started with --background")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="only this agent (file stem), env id or plan group; repeatable (one of each kind must match)",
    )
    p.add_argument("--seeds", default="", help="only these seeds: a range 0-4, a list 0,2 or one seed")
    p.set_defaults(func=_cmd_campaign)

    p = sub.add_parser(
        "render",
        help="one rendered frame of an env on a task, as a PNG",
        description="Make ID, set task N of SPLIT, take STEPS seeded random actions (fewer if the episode "
        "ends) and write the frame to OUT. MuJoCo families need an OpenGL backend (metabench/gl.py).",
    )
    p.add_argument("env_id", metavar="ID", help="env id, e.g. metabench/PointNav-v0")
    p.add_argument("--task", type=int, default=0, metavar="N", help="task index in the split (default 0)")
    p.add_argument("--split", default="test", help="train, test or test-ood (default test)")
    p.add_argument("-o", "--out", required=True, metavar="PNG", help="where the picture goes (.png)")
    p.add_argument("--steps", type=int, default=10, help="random actions before the frame (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the reset and the actions (default 0)")
    p.add_argument("--size", type=int, default=0, metavar="PX", help="longest side, pixels (0: as rendered)")
    p.add_argument("--camera", default=None, metavar="NAME", help="a camera of the model (MuJoCo families)")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("docs", help="regenerate docs/families.md and the family pictures (make docs)")
    p.add_argument("--out", default="docs", metavar="DIR", help="the docs folder (default docs)")
    p.add_argument("--check", action="store_true", help="fail if families.md is stale or a picture is absent")
    p.add_argument("--no-pictures", action="store_true", help="write families.md only")
    p.set_defaults(func=_cmd_docs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; bad input ends in a one-line error on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        print(f"metabench: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # evaluate says how many records it wrote; elsewhere nothing was
        print("metabench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`metabench list | head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
