"""Issue 16, "nothing is lost and nothing is half-written": every bad input is refused before work is
spent, in one line with no traceback, and no record that existed before is changed or lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from metabench.cli import build_parser, main
from metabench.harness import ActionCheck, CurveLogger, InvalidAction, Unit, existing_ok, write_unit_record
from metabench.protocol import AgentError, build_config, load_agent_module
from metabench.records import load_record, record_path, rerun_error_path
from metabench.tasks import Task, TaskError

POINT = "metabench/PointNav-v0"
CONSTANT = str(Path(__file__).parent / "agents" / "constant_agent.py")

#: A test agent whose ``mode`` (for seed ``only_seed``, or every seed when it is -1) breaks one rule.
FAULTY = """
import dataclasses
import sys
import time

import numpy as np


@dataclasses.dataclass
class Config:
    mode: str = "ok"
    only_seed: int = -1
    strength: float = 1.0
    n: int = 1
    vec: tuple[float, ...] = (0.0, 0.0)


class Agent:
    def __init__(self, config):
        self.config = config
        self.broken = False

    def meta_train(self, make_env, tasks, budget, *, seed, log):
        mode = self.config.mode
        self.broken = self.config.only_seed in (-1, seed)
        env = make_env()
        env.reset(seed=seed, options={"task": tasks[0]})
        for _ in range(5):
            env.step(np.zeros(2, dtype=np.float32))
        log(5, loss=1.0)
        if not self.broken:
            return
        if mode == "interrupt":
            raise KeyboardInterrupt
        if mode == "sleep":
            time.sleep(120)
        if mode == "print":
            print("agent says hi")
        if mode == "bad_log_caught":
            try:
                log(10, loss=2.0, note="not a number")
            except TypeError:
                pass
            log(15, loss=3.0)
        if mode == "bad_log":
            log(10, loss=2.0, note="not a number")

    def begin_trial(self):
        pass

    def act(self, obs, *, explore):
        if self.broken and self.config.mode == "none_action":
            return None
        if self.broken and self.config.mode == "exit":
            sys.exit(3)
        if self.broken and self.config.mode == "raise":
            raise RuntimeError("boom")
        return np.zeros(2, dtype=np.float32)

    def observe(self, transition):
        pass

    def end_episode(self):
        pass

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        return cls(Config())


def make_agent(config: Config) -> Agent:
    return Agent(config)
"""


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("agents") / "faulty.py"
    path.write_text(FAULTY)
    return str(path)


def call(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own exits (--version, --help, its errors)
        return int(exc.code)


def evaluate(agent: str, out: Path, *extra: str, seeds: str = "0", tier: str = "smoke") -> list[str]:
    return ["evaluate", agent, "--env", POINT, "--tier", tier, "--seeds", seeds, "--out", str(out), *extra]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("metabench: ") and "Traceback" not in err, err
    return err


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ok_record(tmp_path_factory: pytest.TempPathFactory, faulty: str) -> bytes:
    """The bytes of an ok smoke record of the faulty agent (seed 0), made once."""
    out = tmp_path_factory.mktemp("made")
    assert main(evaluate(faulty, out, "--quiet")) == 0
    return record_path(out, POINT, "faulty", 0).read_bytes()


def put(out: Path, data: bytes, seed: int = 0) -> Path:
    path = record_path(out, POINT, "faulty", seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------- output folders
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_an_output_folder_that_is_a_file_is_refused_before_the_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    faulty: str,
    where: str,
    workers: str,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # found before Ray starts: importing it would fail
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "smoke"
    assert call(evaluate(faulty, out, "--workers", workers, "--quiet")) == 2
    err = one_line_error(capsys)
    assert f"cannot write to {out}" in err and "is a file, not a directory" in err and "--out" in err
    assert blocker.read_text() == "not a folder"


def test_a_read_only_output_folder_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, faulty: str
) -> None:
    """A folder the OS refuses (simulated: root may write anywhere, so chmod cannot show it here)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    assert call(evaluate(faulty, locked / "smoke", "--quiet")) == 2
    err = one_line_error(capsys)
    assert "permission denied" in err and str(locked) in err
    assert list(locked.iterdir()) == []
    assert call(["leaderboard", str(tmp_path), "-o", str(locked)]) == 2
    assert "permission denied" in one_line_error(capsys)


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write to a read-only folder"
)
def test_a_chmod_read_only_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], faulty: str
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert call(evaluate(faulty, locked, "--quiet")) == 2
        assert "permission denied" in one_line_error(capsys)
    finally:
        locked.chmod(0o755)


def test_leaderboard_output_that_is_a_file_is_refused_before_the_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ok_record: bytes
) -> None:
    put(tmp_path / "records", ok_record)
    blocker = tmp_path / "tables"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        assert call(["leaderboard", str(tmp_path / "records"), "-o", str(out)]) == 2
        assert "is a file, not a directory; choose another -o" in one_line_error(capsys)
    assert blocker.read_text() == "x"


# ---------------------------------------------------------------------------------- config values
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_config_values_are_refused_when_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], faulty: str, value: str
) -> None:
    assert call(evaluate(faulty, tmp_path, "--config", f"strength={value}")) == 2
    err = one_line_error(capsys)
    assert f"strength={value!r}" in err and "not a finite number" in err
    assert call(evaluate(faulty, tmp_path, "--config", f"vec=0,{value}")) == 2
    assert "not a finite number" in one_line_error(capsys)
    assert not any(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("strength = nan", "strength = nan is not a finite number"),
        ("strength = inf", "strength = inf is not a finite number"),
        ("n = 2.5", "n = 2.5 is not an integer (Config.n is int)"),
        ("n = true", "n = True is not an integer"),
        ("n = '3'", "n = '3' is not an integer"),
        ("strength = [1, 2]", "strength = [1, 2] is not a number (Config.strength is float)"),
        ("strength = true", "strength = True is not a number"),
        ("mode = 3", "mode = 3 is not a string"),
        ("vec = 1.0", "vec = 1.0 is not an array"),
        ("vec = [1.0, 'x']", "is not an array whose items are each a number"),
        ("vec = [1.0, nan]", "is not an array whose items are each a finite number"),
    ],
)
def test_config_file_values_are_type_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], faulty: str, toml: str, named: str
) -> None:
    file = tmp_path / "c.toml"
    file.write_text(toml + "\n")
    assert call(evaluate(faulty, tmp_path / "out", "--config-file", str(file))) == 2
    assert named in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_config_file_values_of_the_right_type_pass(faulty: str) -> None:
    module = load_agent_module(faulty)
    config = build_config(module, "smoke", {"strength": 2, "n": 3, "vec": [1.0, 2], "mode": "ok"})
    assert (config.strength, config.n, config.vec, config.mode) == (2, 3, (1.0, 2), "ok")
    with pytest.raises(AgentError, match=r"n = 2\.5"):
        build_config(module, "smoke", {"n": 2.5})
    # --config beats the file, and its string is what is checked
    assert build_config(module, "smoke", {"n": 2.5}, {"n": "4"}).n == 4


# ---------------------------------------------------------------------------------------- log()
def test_a_bad_log_call_names_the_scalar_and_appends_nothing() -> None:
    log = CurveLogger()
    log(1, loss=0.5)
    with pytest.raises(TypeError, match="scalar note='x' is not"):
        log(2, loss=0.25, note="x")
    with pytest.raises(TypeError, match="env_steps='2'"):
        log("2", loss=0.25)
    with pytest.raises(ValueError, match="env_steps=-1 is negative"):
        log(-1, loss=0.25)
    log(3.0, other=1.0)
    curve = log.to_dict()
    assert curve == {"env_steps": [1, 3], "loss": [0.5, None], "other": [None, 1.0]}


def test_an_agent_that_catches_its_bad_log_call_keeps_an_ok_record(tmp_path: Path, faulty: str) -> None:
    assert call(evaluate(faulty, tmp_path, "--quiet", "--config", "mode=bad_log_caught")) == 0
    rec = load_record(record_path(tmp_path, POINT, "faulty", 0))
    assert rec["status"] == "ok" and rec["meta_train_curve"] == {"env_steps": [5, 15], "loss": [1.0, 3.0]}
    assert rec["episodes"]["return"]


def test_an_uncaught_bad_log_call_is_the_runs_error_and_the_record_keeps_its_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], faulty: str
) -> None:
    assert call(evaluate(faulty, tmp_path, "--quiet", "--config", "mode=bad_log")) == 1
    assert "TypeError: log() takes numbers; scalar note='not a number' is not one" in capsys.readouterr().err
    rec = load_record(record_path(tmp_path, POINT, "faulty", 0))
    assert rec["status"] == "error" and rec["error"]["type"] == "TypeError"
    assert rec["run"]["config"]["mode"] == "bad_log"
    assert rec["meta_train_curve"] == {"env_steps": [5], "loss": [1.0]}


def test_a_record_that_cannot_be_written_as_it_is_keeps_config_and_episodes(
    tmp_path: Path, ok_record: bytes, faulty: str
) -> None:
    record = json.loads(ok_record)
    record["meta_train_curve"]["loss"].append(2.0)  # one column longer than env_steps
    unit = Unit(faulty, POINT, "smoke", 0, str(tmp_path))
    path, _ = write_unit_record(unit, record)
    assert path == unit.path
    rec = load_record(path)
    assert rec["status"] == "error" and "meta_train_curve.loss" in rec["error"]["message"]
    assert rec["run"]["config"] == json.loads(ok_record)["run"]["config"]
    assert rec["episodes"] == json.loads(ok_record)["episodes"]


# ------------------------------------------------------------------------------ --force and tiers
def test_a_failed_forced_rerun_leaves_its_error_record_beside_the_ok_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ok_record: bytes, faulty: str
) -> None:
    out = tmp_path / "res"
    kept = put(out, ok_record)
    beside = rerun_error_path(kept)
    assert beside.name == "seed0.error.json"
    assert call(evaluate(faulty, out, "--quiet", "--force", "--config", "mode=raise")) == 1
    err = capsys.readouterr().err
    assert f"error record: {beside}, beside the ok record it did not replace" in err
    assert kept.read_bytes() == ok_record
    assert load_record(beside)["status"] == "error"

    assert call(["show", str(kept)]) == 0
    assert f"a rerun of this unit failed; its error record is {beside}" in capsys.readouterr().out
    assert call(["show", str(beside)]) == 0
    assert f"the ok record {kept} was kept" in capsys.readouterr().out
    assert call(["show", str(out)]) == 0
    assert "error (failed rerun; ok record kept)" in capsys.readouterr().out
    assert call(["leaderboard", str(out), "-o", str(tmp_path / "lb")]) == 0
    table = (tmp_path / "lb" / "metabench__PointNav-v0__smoke.md").read_text()
    assert "seed0.error.json` (faulty, seed 0): RuntimeError: boom (a failed rerun; the ok record" in table

    assert call(evaluate(faulty, out, "--quiet")) == 0  # skipped, and says what is beside it
    assert "a failed rerun's error record is beside it" in capsys.readouterr().out
    assert call(evaluate(faulty, out, "--quiet", "--force")) == 0  # an ok rerun: the error is history
    assert not beside.exists() and load_record(kept)["status"] == "ok"


def test_an_ok_record_of_another_tier_or_budget_does_not_make_a_run_skip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ok_record: bytes, faulty: str
) -> None:
    out = tmp_path / "res"
    kept = put(out, ok_record)
    smoke, ci = (Unit(faulty, POINT, tier, 0, str(out)) for tier in ("smoke", "ci"))
    assert existing_ok(kept) and existing_ok(kept, smoke) and not existing_ok(kept, ci)
    assert call(evaluate(faulty, out, "--quiet", tier="ci")) == 2
    err = one_line_error(capsys)
    assert "holds a smoke-tier record (budget 2000 env steps) and this run is ci (budget 100000" in err
    assert "another --out" in err and "--force" in err
    assert kept.read_bytes() == ok_record

    other_budget = json.loads(ok_record)
    other_budget["provenance"]["budget"]["env_steps"] = 1234
    put(out, json.dumps(other_budget).encode())
    assert not existing_ok(kept, smoke)
    assert call(evaluate(faulty, out, "--quiet")) == 2
    assert "holds a smoke-tier record (budget 1234 env steps) and this run is smoke (budget 2000" in (
        one_line_error(capsys)
    )


# ---------------------------------------------------------------------------------- leaderboards
def test_leaderboard_of_error_records_only_or_no_episodes_is_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ok_record: bytes, faulty: str
) -> None:
    errors = tmp_path / "errors"
    assert call(evaluate(faulty, errors, "--quiet", "--config", "mode=raise")) == 1
    assert call(["leaderboard", str(errors), "-o", str(tmp_path / "lb1")]) == 0
    table = (tmp_path / "lb1" / "metabench__PointNav-v0__smoke.md").read_text()
    assert "| faulty" in table and "RuntimeError: boom" in table
    assert (tmp_path / "lb1" / "metabench__PointNav-v0__smoke.png").read_bytes()[:4] == b"\x89PNG"

    empty = json.loads(ok_record)
    empty["episodes"] = {k: [] for k in empty["episodes"]}
    put(tmp_path / "empty", json.dumps(empty).encode())
    assert call(["leaderboard", str(tmp_path / "empty"), "-o", str(tmp_path / "lb2")]) == 0
    assert "| faulty" in (tmp_path / "lb2" / "metabench__PointNav-v0__smoke.md").read_text()
    assert "Traceback" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- damaged records
def test_a_record_that_is_not_utf8_is_named_like_a_truncated_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ok_record: bytes, faulty: str
) -> None:
    out = tmp_path / "res"
    latin = put(out, ok_record.replace(b'"host"', b'"h\xe9st"'))
    for argv in (
        ["show", str(latin)],
        ["show", str(out)],
        ["leaderboard", str(out), "-o", str(tmp_path / "lb")],
    ):
        assert call(argv) == 2
        err = one_line_error(capsys)
        assert f"{latin}: not valid JSON" in err and "utf-8" in err
    # evaluate treats it as no record, as it does a truncated one: the unit runs and replaces it
    assert call(evaluate(faulty, out, "--quiet")) == 0
    assert load_record(latin)["status"] == "ok"


# ------------------------------------------------------------------------------ Ctrl-C, sys.exit
def test_ctrl_c_says_how_many_records_were_written_and_exits_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], faulty: str
) -> None:
    args = evaluate(faulty, tmp_path, "--config", "mode=interrupt", "--config", "only_seed=1", seeds="0-2")
    assert call(args) == 130
    printed = capsys.readouterr()
    assert (
        printed.err.strip().splitlines()[-1] == "metabench: interrupted: 1 record(s) written, rerun to resume"
    )
    assert "Traceback" not in printed.err
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["seed0.json"]


def test_a_real_sigint_mid_run(tmp_path: Path, faulty: str) -> None:
    """SIGINT while seed 1 meta-trains: seed 0's record stays, nothing half-written, one line, 130."""
    argv = [sys.executable, "-m", "metabench.cli", *evaluate(faulty, tmp_path, seeds="0-1")]
    argv += ["--quiet", "--config", "mode=sleep", "--config", "only_seed=1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = record_path(tmp_path, POINT, "faulty", 0)
    # generous limits: on a loaded 2-core machine (make test beside a campaign) the child's imports alone
    # took long enough for the old 120 s / 60 s limits to expire
    deadline = time.monotonic() + 300
    while not first.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # into seed 1's meta-training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "metabench: interrupted: 1 record(s) written, rerun to resume"
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["seed0.json"]
    assert load_record(first)["status"] == "ok"


def test_an_agent_that_calls_sys_exit_leaves_an_error_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], faulty: str
) -> None:
    args = evaluate(
        faulty, tmp_path, "--quiet", "--config", "mode=exit", "--config", "only_seed=0", seeds="0-1"
    )
    assert call(args) == 1
    assert "SystemExit: sys.exit(3) was called during the run" in capsys.readouterr().err
    recs = [load_record(record_path(tmp_path, POINT, "faulty", s)) for s in (0, 1)]
    assert [r["status"] for r in recs] == ["error", "ok"]  # the next unit still ran
    assert recs[0]["error"]["type"] == "SystemExit"


def test_an_agent_file_that_exits_on_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent = tmp_path / "exits.py"
    agent.write_text("import sys\nsys.exit(4)\n")
    assert call(evaluate(str(agent), tmp_path / "out")) == 2
    assert "importing agent file" in one_line_error(capsys)


# ------------------------------------------------------------------------------------- --seeds
@pytest.mark.parametrize(
    ("seeds", "envs", "count"), [("0-100000000", 1, "100000001 seeds"), ("0-600", 2, "make 1202 units")]
)
def test_too_many_units_are_refused_with_the_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seeds: str, envs: int, count: str
) -> None:
    argv = evaluate(CONSTANT, tmp_path, seeds=seeds) + ["--env", "metabench/PointNavSparse-v0"] * (envs - 1)
    started = time.monotonic()
    assert call(argv) == 2
    err = one_line_error(capsys)
    assert count in err and "1000" in err
    assert time.monotonic() - started < 5  # refused at once, not after building 10^8 seeds
    assert not tmp_path.joinpath("metabench__PointNav-v0").exists()


# --------------------------------------------------------------------------------------- minor
def test_a_directory_as_the_agent_or_a_file_as_the_records_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ok_record: bytes
) -> None:
    assert call(evaluate(str(tmp_path), tmp_path / "out")) == 2
    assert f"agent {str(tmp_path)!r} is a directory, not an agent file" in one_line_error(capsys)
    record = put(tmp_path / "res", ok_record)
    assert call(["leaderboard", str(record), "-o", str(tmp_path / "lb")]) == 2
    assert f"{record}: is a file, not a records directory" in one_line_error(capsys)


def test_a_none_action_is_named_none() -> None:
    for space in (gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3)):
        with pytest.raises(InvalidAction, match="agent 'a' returned None instead of an action"):
            ActionCheck(space, "a")(None)


def test_the_summary_counts_the_error_records_it_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], faulty: str
) -> None:
    args = evaluate(faulty, tmp_path, "--config", "mode=raise", "--config", "only_seed=1", seeds="0-1")
    assert call(args) == 1
    assert (
        capsys.readouterr().err.strip().splitlines()[-1] == "2 record(s) written (1 ok, 1 error), 0 skipped"
    )


def test_list_filter_without_a_match(capsys: pytest.CaptureFixture[str]) -> None:
    assert call(["list", "--filter", "NoSuchFamily"]) == 2
    assert "no env id or suite contains 'NoSuchFamily'" in one_line_error(capsys)


def test_version_and_help_without_rest_quotes(capsys: pytest.CaptureFixture[str]) -> None:
    import metabench

    assert call(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"metabench {metabench.__version__}"
    parser = build_parser()
    helps = [parser.format_help()]
    helps += [p.format_help() for a in parser._subparsers._group_actions for p in a.choices.values()]
    assert len(helps) > 4 and not [h for h in helps if "``" in h]


@pytest.mark.parametrize(
    "text", ["{not json", "[1, 2]", '{"family": "x", "split": "train", "index": "a", "params": {}}']
)
def test_task_from_bad_json_raises_task_error(text: str) -> None:
    with pytest.raises(TaskError):
        Task.from_json(text)


def test_step_after_a_failed_first_reset_says_reset(tmp_path: Path) -> None:
    env = gym.make(POINT)
    with pytest.raises(TaskError):
        env.reset(options={"task": Task("metabench/Nope-v0", "train", 0, {})})
    with pytest.raises(gym.error.ResetNeeded, match=r"call reset\(\) successfully before step\(\)"):
        env.step(np.zeros(2, dtype=np.float32))
