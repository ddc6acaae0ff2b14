"""Campaigns: the resumable runs that grow a committed leaderboard, a few units at a time.

A leaderboard on MuJoCo and Meta-World families is many core-hours, more than one sitting. A
*campaign* is the list of its units, kept in a plan file beside the leaderboard
(``leaderboards/ci/campaign.toml``)::

    tier = "ci"
    records = "records"          # relative to the plan file
    unit_timeout_minutes = 45    # a unit still running then is stopped (no record)

    [[group]]
    name = "headline"
    envs = ["metabench/StrikerDynamics-v0", "metabench/HalfCheetahVel-v0"]
    agents = ["agents/random_agent.py", "agents/pearl.py"]
    seeds = "0-4"

``metabench campaign PLAN`` runs every unit that has no ok record *made by the current code* (the agent
file, the modules it imports and its hyperparameter file, the resolved config, the tier and the budget:
:func:`unit_state`), ``--jobs`` at a time (each in its own process, with one compute thread:
``OMP_NUM_THREADS=1`` unless set), in plan order with seeds outermost, so that every agent of a group
gets seed 0 before any gets seed 1. Each record is written atomically by the harness; ``--commit``
also re-renders the tables beside the plan and commits the record and the tables (only those paths),
so a campaign that is stopped, or a session that ends, loses only the units in flight. ``--dry-run``
lists what is missing and estimates the core-hours from the CPU times (older records: the wall times)
of the records already there (the same agent and family, any seed), ``unit_timeout_minutes`` for the
others.
``--background`` detaches it (log and pid file beside the plan); ``--stop`` ends a detached one.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from metabench.harness import UsageError, agent_name, parse_seeds
from metabench.records import RecordError, load_record, record_path


@dataclasses.dataclass(frozen=True)
class CampaignUnit:
    group: str  # the first group that names the unit
    agent: str  # the agent file as written in the plan (relative to the repository root)
    env_id: str
    seed: int
    groups: frozenset[str] = frozenset()  # every group that names it (a unit runs once)

    def describe(self) -> str:
        return f"{agent_name(self.agent)} on {self.env_id} seed {self.seed}"


@dataclasses.dataclass(frozen=True)
class Plan:
    path: Path
    tier: str
    records: Path
    unit_timeout_minutes: float
    units: tuple[CampaignUnit, ...]

    @property
    def out_dir(self) -> Path:
        """Where the tables go: beside the plan."""
        return self.path.parent


def _budget(env_id: str, tier: str) -> int:
    """The meta-training budget at ``tier`` of a family, or of a transfer suite (``suite/...``)."""
    if env_id.startswith("suite/"):
        from metabench.suite_harness import tier_value
        from metabench.suites import get_suite

        suite = get_suite(env_id)
        return tier_value(suite, suite.budgets, tier)
    from metabench.harness import tier_budget

    return tier_budget(env_id, tier)


def load_plan(path: str | Path) -> Plan:
    """Read and check a plan file (one-line :class:`UsageError` on anything wrong). ``envs`` may name
    transfer suites (``suite/...``, run with ``--suite``)."""
    from metabench.harness import check_tier
    from metabench.suites import get_suite
    from metabench.tasks import TaskError, env_class

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"campaign plan {path} does not exist (see leaderboards/ci/campaign.toml)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read campaign plan {path}: {exc}") from exc
    tier = check_tier(str(raw.get("tier", "ci")))
    groups = raw.get("group")
    if not isinstance(groups, list) or not groups:
        raise UsageError(f"campaign plan {path} has no [[group]] tables")
    # a unit named by several groups (no_context on PointNav: "cheap" and "context") is one unit
    named: dict[tuple[str, str, int], list[str]] = {}
    for i, group in enumerate(groups):
        name = str(group.get("name", f"group {i}"))
        missing = [k for k in ("envs", "agents", "seeds") if k not in group]
        if missing:
            raise UsageError(f"campaign plan {path}: group {name!r} lacks {', '.join(missing)}")
        for agent in group["agents"]:
            if not Path(agent).is_file():
                raise UsageError(f"campaign plan {path}: group {name!r} names {agent}, which is not a file")
        for env_id in group["envs"]:
            try:
                get_suite(env_id) if env_id.startswith("suite/") else env_class(env_id)
            except TaskError as exc:
                raise UsageError(f"campaign plan {path}: group {name!r}: {exc}") from exc
            _budget(env_id, tier)
        for seed in parse_seeds(str(group["seeds"])):
            for env_id in group["envs"]:
                for agent in group["agents"]:
                    in_groups = named.setdefault((agent, env_id, seed), [])
                    if name not in in_groups:
                        in_groups.append(name)
    records = path.parent / str(raw.get("records", "records"))
    timeout = float(raw.get("unit_timeout_minutes", 45))
    if not timeout > 0:
        raise UsageError(f"campaign plan {path}: unit_timeout_minutes must be positive, got {timeout}")
    units = tuple(CampaignUnit(g[0], a, e, s, frozenset(g)) for (a, e, s), g in named.items())
    return Plan(path, tier, records, timeout, units)


# ------------------------------------------------------------------------------------- unit state
def unit_record(plan: Plan, unit: CampaignUnit) -> Path:
    return record_path(plan.records, unit.env_id, agent_name(unit.agent), unit.seed)


def unit_state(plan: Plan, unit: CampaignUnit) -> str:
    """``"done"`` (an ok record made by the current code at this tier and budget), ``"stale"`` (an ok
    record made by other code, config, tier or budget), ``"error"`` or ``"missing"``."""
    from metabench.harness import changed_imports, file_sha256
    from metabench.protocol import build_config, config_to_dict, load_agent_module

    path = unit_record(plan, unit)
    if not path.is_file():
        return "missing"
    try:
        record = load_record(path)
    except RecordError:
        return "error"
    if record["status"] != "ok":
        return "error"
    run, prov = record["run"], record["provenance"]
    module = load_agent_module(unit.agent)
    config = config_to_dict(build_config(module, plan.tier, None, None, unit.env_id))
    from metabench.harness import _jsonable

    current = (
        run["tier"] == plan.tier
        and prov["budget"]["env_steps"] == _budget(unit.env_id, plan.tier)
        and prov["agent_sha256"] == file_sha256(unit.agent)
        and changed_imports(prov.get("agent_imports_sha256"), unit.agent) == []
        and run["config"] == _jsonable(config)
        and prov["git_dirty"] is False
    )
    return "done" if current else "stale"


def estimate_minutes(plan: Plan, unit: CampaignUnit) -> tuple[float, bool]:
    """(minutes, measured): the median cost of this agent's records on this family (any seed, current
    or not): CPU time, or wall time in records made before it was recorded; else the plan's unit
    timeout (``measured`` False)."""
    folder = unit_record(plan, unit).parent
    costs = []
    for path in folder.glob("seed*.json"):
        try:
            record = load_record(path)
        except RecordError:
            continue
        if record["status"] == "ok" and record["run"]["tier"] == plan.tier:
            prov = record["provenance"]
            costs.append(float(prov.get("cpu_time_s", prov["wall_time_s"])))
    if costs:
        return statistics.median(costs) / 60.0, True
    return plan.unit_timeout_minutes, False


# ---------------------------------------------------------------------------------------- running
class Runner:
    """Runs units as ``metabench evaluate`` subprocesses, ``jobs`` at a time; commits as they finish."""

    def __init__(self, plan: Plan, jobs: int, commit: bool, say: Callable[[str], None] = print):
        self.plan, self.jobs, self.commit, self.say = plan, jobs, commit, say
        self.lock = threading.Lock()
        self.procs: set[subprocess.Popen[bytes]] = set()
        self.stopping = False
        self.done = self.failed = 0

    def command(self, unit: CampaignUnit) -> list[str]:
        return [
            sys.executable, "-m", "metabench.cli", "evaluate", unit.agent,
            "--suite" if unit.env_id.startswith("suite/") else "--env", unit.env_id,
            "--tier", self.plan.tier, "--seeds", str(unit.seed), "--out", str(self.plan.records),
            "--quiet", "--force",
        ]  # fmt: skip

    @staticmethod
    def unit_env() -> dict[str, str]:
        """The environment of a unit's process: one compute thread unless the user chose otherwise.

        A unit is sized for one core, and ``--jobs`` units share the machine. torch, left to itself,
        starts a thread per core in every unit, and agents that do not set their own count (SB3's TD3 in
        ``from_scratch``) then oversubscribe the cores: on 2 cores beside other work, one from_scratch
        unit took 528 CPU-seconds with torch's default threads and 25 with one thread, the same returns.
        """
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        return env

    def run_one(self, unit: CampaignUnit) -> None:
        if self.stopping:
            return
        t0 = time.monotonic()
        self.say(f"{time.strftime('%H:%M:%S')} start {unit.describe()}")
        # Its own process group, so that stopping the campaign stops the unit's workers too.
        proc = subprocess.Popen(
            self.command(unit), start_new_session=True, stdout=subprocess.DEVNULL, env=self.unit_env()
        )
        with self.lock:
            self.procs.add(proc)
        try:
            rc = proc.wait(timeout=self.plan.unit_timeout_minutes * 60)
        except subprocess.TimeoutExpired:
            _kill(proc)
            rc = None
        finally:
            with self.lock:
                self.procs.discard(proc)
        minutes = (time.monotonic() - t0) / 60
        if self.stopping:
            self.say(f"{time.strftime('%H:%M:%S')} stopped {unit.describe()} (no record)")
            return
        if rc == 0 and unit_record(self.plan, unit).is_file():
            with self.lock:
                self.done += 1
                if self.commit:
                    self.commit_unit(unit, minutes)
            self.say(f"{time.strftime('%H:%M:%S')} done  {unit.describe()} in {minutes:.1f} min")
        else:
            with self.lock:
                self.failed += 1
            why = "timed out" if rc is None else f"exit status {rc}"
            self.say(f"{time.strftime('%H:%M:%S')} FAILED {unit.describe()} ({why}, {minutes:.1f} min)")

    def commit_unit(self, unit: CampaignUnit, minutes: float) -> None:
        """Re-render the tables and commit them with the unit's record (only those paths)."""
        from metabench.leaderboard import main as render

        with open(os.devnull, "w") as null:
            saved, sys.stdout = sys.stdout, null
            try:
                render(str(self.plan.records), str(self.plan.out_dir))
            finally:
                sys.stdout = saved
        message = f"Leaderboard ({self.plan.tier}): {unit.describe()} ({minutes:.1f} min)"
        git = ["git", "-C", str(self.plan.out_dir)]
        added = subprocess.run([*git, "add", "--", "."], capture_output=True, text=True, check=False)
        done = subprocess.run(
            [*git, "commit", "-q", "-m", message, "--", "."], capture_output=True, text=True, check=False
        )
        if added.returncode or done.returncode:
            self.say(f"could not commit {unit.describe()}: {(added.stderr + done.stderr).strip()[:300]}")

    def stop(self, *_: Any) -> None:
        self.stopping = True
        with self.lock:
            for proc in list(self.procs):
                _kill(proc)

    def run(self, units: Sequence[CampaignUnit]) -> int:
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(self.run_one, units))
        return 0 if not self.failed and not self.stopping else 1


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------------------------------- main
def main(
    plan_path: str,
    *,
    jobs: int = 2,
    commit: bool = False,
    dry_run: bool = False,
    background: bool = False,
    stop: bool = False,
    only: Sequence[str] = (),
    seeds: Sequence[int] = (),
) -> int:
    plan = load_plan(plan_path)
    pid_file, log_file = plan.out_dir / "campaign.pid", plan.out_dir / "campaign.log"
    if stop:
        return _stop(pid_file)
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    units = select(plan, only, seeds)
    states = {u: unit_state(plan, u) for u in units}
    todo = [u for u in units if states[u] != "done"]
    counts = {s: sum(v == s for v in states.values()) for s in ("done", "stale", "error", "missing")}
    estimates = [estimate_minutes(plan, u) for u in todo]
    core_hours = sum(m for m, _ in estimates) / 60
    unmeasured = sum(not measured for _, measured in estimates)
    print(
        f"campaign {plan.path}: {len(units)} units: {counts['done']} done, {counts['stale']} stale, "
        f"{counts['error']} error, {counts['missing']} missing; {len(todo)} to run, about "
        f"{core_hours:.1f} core-hours ({unmeasured} of them unmeasured, counted at "
        f"{plan.unit_timeout_minutes:g} min), {core_hours / jobs:.1f} h at --jobs {jobs}"
    )
    if dry_run:
        for unit, (minutes, measured) in zip(todo, estimates, strict=True):
            print(f"  {states[unit]:7} {unit.describe()}  ~{minutes:.0f} min{'' if measured else ' (guess)'}")
        return 0
    if not todo:
        return 0
    if background:
        return _detach(plan_path, jobs, commit, only, seeds, pid_file, log_file)
    runner = Runner(plan, jobs, commit, say=lambda line: print(line, flush=True))
    signal.signal(signal.SIGTERM, runner.stop)
    try:
        status = runner.run(todo)
    except KeyboardInterrupt:
        runner.stop()
        status = 130
    print(f"campaign: {runner.done} unit(s) done, {runner.failed} failed, rerun to resume", flush=True)
    return status


def select(plan: Plan, only: Sequence[str] = (), seeds: Sequence[int] = ()) -> list[CampaignUnit]:
    """The plan's units that ``only`` and ``seeds`` name, in plan order. ``only`` holds agent file stems,
    env ids and group names: a unit is kept when it matches one of each kind given (agents ``maml`` and
    ``rl2`` with group ``headline``: those two agents' headline units). Unknown names are refused."""
    kinds = {
        "agent": {agent_name(u.agent) for u in plan.units},
        "env": {u.env_id for u in plan.units},
        "group": {g for u in plan.units for g in u.groups},
    }
    wanted: dict[str, set[str]] = {}
    for name in only:
        kind = next((k for k, names in kinds.items() if name in names), None)
        if kind is None:
            raise UsageError(
                f"--only {name!r} names no agent, env id or group of {plan.path}; "
                f"its groups: {', '.join(sorted(kinds['group']))}"
            )
        wanted.setdefault(kind, set()).add(name)
    bad = sorted(set(seeds) - {u.seed for u in plan.units})
    if bad:
        raise UsageError(f"--seeds {bad[0]} is not a seed of {plan.path}")

    def keep(u: CampaignUnit) -> bool:
        values = {"agent": {agent_name(u.agent)}, "env": {u.env_id}, "group": u.groups}
        return all(values[k] & names for k, names in wanted.items()) and (not seeds or u.seed in seeds)

    return [u for u in plan.units if keep(u)]


def _detach(
    plan_path: str,
    jobs: int,
    commit: bool,
    only: Sequence[str],
    seeds: Sequence[int],
    pid_file: Path,
    log_file: Path,
) -> int:
    if pid_file.is_file() and _alive(int(pid_file.read_text().strip() or 0)):
        raise UsageError(f"a campaign is already running (pid file {pid_file}); stop it with --stop")
    cmd = [sys.executable, "-m", "metabench.cli", "campaign", plan_path, "--jobs", str(jobs)]
    cmd += ["--commit"] if commit else []
    for item in only:
        cmd += ["--only", item]
    if seeds:
        cmd += ["--seeds", ",".join(map(str, seeds))]
    with open(log_file, "a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    print(
        f"campaign running in the background (pid {proc.pid}); log: {log_file}; "
        f"stop: metabench campaign {plan_path} --stop"
    )
    return 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(pid_file: Path) -> int:
    pid = int(pid_file.read_text().strip() or 0) if pid_file.is_file() else 0
    if not _alive(pid):
        print("no campaign is running")
        pid_file.unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)  # the campaign stops its units' process groups, then exits
    pid_file.unlink(missing_ok=True)
    print(f"stopped the campaign (pid {pid}); units in flight leave no record, rerun to resume")
    return 0
