"""`metabench evaluate / show / leaderboard`: records written and reported, one-line errors for bad
input with nothing already written lost, reruns skip finished units, and Ray gives the same records."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from metabench.cli import main
from metabench.records import load_record, record_path

AGENTS = Path(__file__).parent / "agents"
CONSTANT = str(AGENTS / "constant_agent.py")
BAD = str(AGENTS / "bad_agent.py")
POINT = "metabench/PointNav-v0"


def evaluate(out: Path, agent: str = CONSTANT, *extra: str, seeds: str = "0") -> list[str]:
    return ["evaluate", agent, "--env", POINT, "--tier", "smoke", "--seeds", seeds, "--out", str(out), *extra]


def call(argv: list[str]) -> int:
    """``metabench ARGV`` as the console script runs it: its exit status."""
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("metabench") and "error:" in err and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def a_record(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of one real record (constant agent, seed 0), made once for this module."""
    out = tmp_path_factory.mktemp("made")
    assert main(evaluate(out, CONSTANT, "--quiet")) == 0
    return record_path(out, POINT, "constant_agent", 0).read_bytes()


def put(out: Path, data: bytes, agent: str = "constant_agent", seed: int = 0) -> Path:
    path = record_path(out, POINT, agent, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_evaluate_writes_records_prints_paths_and_skips_on_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res"
    assert main(evaluate(out, CONSTANT, "--quiet", seeds="0-1")) == 0
    stdout = capsys.readouterr().out
    paths = [record_path(out, POINT, "constant_agent", s) for s in (0, 1)]
    for path in paths:
        assert f"wrote {path}" in stdout
        assert load_record(path)["status"] == "ok"
    stamps = [p.stat().st_mtime_ns for p in paths]

    assert main(evaluate(out, CONSTANT, "--quiet", seeds="0-1")) == 0
    stdout = capsys.readouterr().out
    assert stdout.count("skip") == 2 and "wrote" not in stdout
    assert [p.stat().st_mtime_ns for p in paths] == stamps

    assert main(evaluate(out, CONSTANT, "--quiet", "--config", "strength=0.5", seeds="0")) == 0
    assert "exists (but it was made with another config) (--force reruns it)" in capsys.readouterr().out
    assert paths[0].stat().st_mtime_ns == stamps[0]

    assert main(evaluate(out, CONSTANT, "--quiet", "--force", seeds="1")) == 0
    assert paths[1].stat().st_mtime_ns != stamps[1] and paths[0].stat().st_mtime_ns == stamps[0]

    assert main(["show", str(paths[0])]) == 0
    shown = capsys.readouterr().out
    assert "constant_agent" in shown and "test-ood" in shown and "train-sample" in shown
    assert main(["show", str(out)]) == 0
    assert str(paths[1]) in capsys.readouterr().out


def test_progress_bars_and_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("train_episodes = 2\nstrength = 0.5\n")
    args = evaluate(tmp_path, CONSTANT, "--config-file", str(toml), "--config", "train_episodes=4")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "meta-train" in err and "meta-test" in err  # tqdm bars
    rec = load_record(record_path(tmp_path, POINT, "constant_agent", 0))
    assert rec["run"]["config"] == {"train_episodes": 4, "strength": 0.5}  # --config beats the file
    assert rec["provenance"]["env_steps_used"] == 80


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["evaluate", "nope/agent.py", "--env", POINT, "--tier", "smoke"],
            "agent file 'nope/agent.py' does not exist",
        ),
        (["evaluate", str(AGENTS / "no_make_agent.py"), "--env", POINT, "--tier", "smoke"], "no make_agent"),
        (
            ["evaluate", CONSTANT, "--env", "metabench/PointNv-v0", "--tier", "smoke"],
            "Did you mean metabench/PointNav-v0",
        ),
        (["evaluate", CONSTANT, "--env", POINT, "--tier", "huge"], "valid tiers: smoke, ci, standard"),
        (
            ["evaluate", CONSTANT, "--env", POINT, "--tier", "smoke", "--seeds", "0-x"],
            "cannot parse seeds '0-x'",
        ),
        (
            ["evaluate", CONSTANT, "--env", POINT, "--tier", "smoke", "--config", "bogus=1"],
            "unknown config key",
        ),
        (
            ["evaluate", CONSTANT, "--env", POINT, "--tier", "smoke", "--workers", "0"],
            "--workers must be at least 1",
        ),
        (["evaluate", CONSTANT, "--tier", "smoke"], "--env"),
        (
            [
                "evaluate",
                CONSTANT,
                "--env",
                POINT,
                "--tier",
                "smoke",
                "--force",
                "--ray-address",
                "127.0.0.1:1",
            ],
            "cannot join the Ray cluster at '127.0.0.1:1'",
        ),
    ],
)
def test_bad_input_one_line_error_nothing_written_or_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], a_record: bytes, argv: list[str], message: str
) -> None:
    out = tmp_path / "res"
    kept = put(out, a_record)
    assert call([*argv, "--out", str(out)]) == 2
    assert message in one_line_error(capsys)
    assert kept.read_bytes() == a_record
    assert [p.name for p in out.rglob("*.json")] == ["seed0.json"]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (
            "nan",
            "InvalidAction: agent 'bad_agent' returned a non-finite action [nan, nan]; the space is Box(",
        ),
        (
            "out_of_space",
            "InvalidAction: agent 'bad_agent' returned the action [5.0, 5.0], outside the action",
        ),
        ("raise_in_act", "RuntimeError: boom in act (seed 0)"),
        ("over_budget", "BudgetExceeded: meta-training stepped past the smoke tier's budget: env step 2001"),
    ],
)
def test_failing_agent_error_record_and_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], a_record: bytes, mode: str, message: str
) -> None:
    kept = put(tmp_path, a_record)
    assert call(evaluate(tmp_path, BAD, "--quiet", "--config", f"mode={mode}")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    path = record_path(tmp_path, POINT, "bad_agent", 0)
    assert err[0].startswith("metabench: error: bad_agent on metabench/PointNav-v0 seed 0 failed: ")
    assert message in err[0] and f"(error record: {path})" in err[0]
    assert "Traceback" not in "\n".join(err)
    rec = load_record(path)
    assert rec["status"] == "error" and "Traceback" in rec["error"]["traceback"]
    assert kept.read_bytes() == a_record


def test_one_failed_unit_keeps_the_others_and_is_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = evaluate(tmp_path, BAD, "--quiet", "--config", "fail_seed=1", seeds="0-2")
    assert call(args) == 1
    out = capsys.readouterr()
    paths = [record_path(tmp_path, POINT, "bad_agent", s) for s in range(3)]
    assert [load_record(p)["status"] for p in paths] == ["ok", "error", "ok"]
    assert "boom in act (seed 1)" in out.err and f"wrote {paths[2]}" in out.out
    assert call(args) == 1  # seeds 0 and 2 are skipped, the error record of seed 1 is retried
    out = capsys.readouterr()
    assert out.out.count("skip") == 2 and "boom in act (seed 1)" in out.err


def test_show_rejects_foreign_and_malformed_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], a_record: bytes
) -> None:
    put(tmp_path, a_record)
    foreign = tmp_path / "metabench__PointNav-v0" / "package.json"
    foreign.write_text('{"name": "left-pad", "version": "1.3.0"}')
    assert call(["show", str(tmp_path)]) == 2
    err = one_line_error(capsys)
    assert str(foreign) in err and "'schema'" in err
    broken = put(tmp_path, a_record[: len(a_record) // 2], seed=1)
    assert call(["show", str(broken)]) == 2
    err = one_line_error(capsys)
    assert str(broken) in err and "not valid JSON" in err
    assert call(["show", str(tmp_path / "missing.json")]) == 2
    assert "cannot read record" in one_line_error(capsys)


def test_leaderboard_calls_the_stats_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_main(records_dir: str, out_dir: str, check: bool) -> int:
        calls.append((records_dir, out_dir, check))
        return 3

    module = types.ModuleType("metabench.leaderboard")
    module.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "metabench.leaderboard", module)
    assert call(["leaderboard", "results/ci", "-o", "lb", "--check"]) == 3
    assert call(["leaderboard", "results/ci", "-o", "lb"]) == 3
    assert calls == [("results/ci", "lb", True), ("results/ci", "lb", False)]

    def bad_records(records_dir: str, out_dir: str, check: bool) -> int:
        from metabench.records import load_records

        load_records(records_dir)
        return 0

    module.main = bad_records  # type: ignore[attr-defined]
    (tmp_path / "x.json").write_text("[]")
    assert call(["leaderboard", str(tmp_path), "-o", str(tmp_path / "lb")]) == 2
    assert "x.json" in one_line_error(capsys)


def test_one_worker_runs_without_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert call(evaluate(tmp_path, CONSTANT, "--quiet", "--workers", "1")) == 0


def test_tensorboard_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    tb = tmp_path / "tb"
    assert call(evaluate(tmp_path, CONSTANT, "--quiet", "--tensorboard", str(tb))) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb / "metabench__PointNav-v0" / "constant_agent" / "seed0")).Reload()
    rec = load_record(record_path(tmp_path, POINT, "constant_agent", 0))
    curve = events.Scalars("meta_train/episode_return")
    assert [e.step for e in curve] == rec["meta_train_curve"]["env_steps"]
    assert [e.value for e in curve] == pytest.approx(rec["meta_train_curve"]["episode_return"])
    assert "meta_test/test/return" in events.Tags()["scalars"]


def _comparable(path: Path) -> dict:
    rec = load_record(path)
    for key in ("wall_time_s", "cpu_time_s", "started", "host"):
        rec["provenance"].pop(key)
    return rec


def test_two_workers_give_the_same_records_as_one_and_keep_failed_units_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One Ray session (--workers 2 starts and stops a local instance): seeds 0 and 2 succeed, seed 1
    raises in act; every record matches the in-process run's, up to wall time and host. Seed 3 (Ray
    only) kills its worker process: it ends as an error record written by the driver."""
    pytest.importorskip("ray")
    args = ["--quiet", "--config", "fail_seed=1", "--config", "die_seed=3"]
    assert call(evaluate(tmp_path / "w1", BAD, *args, seeds="0-2")) == 1
    assert call(evaluate(tmp_path / "w2", BAD, *args, "--workers", "2", seeds="0-3")) == 1
    printed = capsys.readouterr()
    died = load_record(record_path(tmp_path / "w2", POINT, "bad_agent", 3))
    assert died["status"] == "error" and died["error"]["type"] == "WorkerCrashedError"
    records = {}
    for seed in range(3):
        one = _comparable(record_path(tmp_path / "w1", POINT, "bad_agent", seed))
        two = _comparable(record_path(tmp_path / "w2", POINT, "bad_agent", seed))
        if seed == 1:
            assert one["status"] == two["status"] == "error"
            assert one["error"]["message"] == two["error"]["message"] == "boom in act (seed 1)"
            one["error"] = two["error"] = None  # tracebacks name the frames; the rest must agree
        else:
            assert two["status"] == "ok"
            assert f"wrote {record_path(tmp_path / 'w2', POINT, 'bad_agent', seed)}" in printed.out
        assert one == two
        records[seed] = two
    assert records[0]["episodes"]["return"] != records[2]["episodes"]["return"]  # seeds really differ
    assert "boom in act (seed 1)" in printed.err


@pytest.mark.slow
def test_readme_smoke_command_no_context(tmp_path: Path) -> None:
    """Issue 3: `metabench evaluate agents/no_context.py --env metabench/PointNav-v0 --tier smoke
    --seeds 0-1` writes two records and prints where, within a minute of CPU time (wall time on a
    shared machine depends on the load; CPU time does not)."""
    import resource
    import subprocess

    agent = Path(__file__).parent.parent / "agents" / "no_context.py"
    if not agent.is_file():
        pytest.skip("agents/no_context.py is not there")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = [sys.executable, "-m", "metabench.cli", "evaluate", str(agent), "--env", POINT, "--tier", "smoke"]
    done = subprocess.run(
        [*argv, "--seeds", "0-1", "--out", str(tmp_path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.returncode == 0, done.stderr
    for seed in (0, 1):
        path = record_path(tmp_path, POINT, "no_context", seed)
        assert f"wrote {path}" in done.stdout
        assert load_record(path)["status"] == "ok"
    assert cpu < 60, f"{cpu:.1f} s of CPU"


def test_a_reader_that_goes_away_ends_the_command_quietly(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`metabench list | head -1`: no traceback when the pipe closes, exit status 141 as cat's."""
    import os

    read, write = os.pipe()
    os.close(read)  # the reader has gone: every write to the pipe fails with EPIPE
    with os.fdopen(write, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        assert main(["list"]) == 141
    assert "Traceback" not in capsys.readouterr().err
