"""Issue 16, "progress that reads well in a log": tqdm bars only on a terminal; in a log, whole lines
(one per unit phase, at most one every 30 s while it runs, with rate and ETA); error lines on their own
line; on Ray, stdout holds only the ``wrote ...`` lines."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from metabench import harness
from metabench.cli import main
from metabench.harness import PROGRESS_EVERY_S, LogProgress, _tqdm
from metabench.records import record_path

POINT = "metabench/PointNav-v0"
BAD = str(Path(__file__).parent / "agents" / "bad_agent.py")

#: An agent that prints on stdout while it meta-trains (as research code does), then acts at zero.
CHATTY = """
import dataclasses
import sys

import numpy as np


@dataclasses.dataclass
class Config:
    pass


class Agent:
    def meta_train(self, make_env, tasks, budget, *, seed, log):
        print(f"agent says hi from seed {seed}")
        sys.stdout.flush()

    def begin_trial(self):
        pass

    def act(self, obs, *, explore):
        return np.zeros(2, dtype=np.float32)

    def observe(self, transition):
        pass

    def end_episode(self):
        pass

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        return cls()


def make_agent(config: Config) -> Agent:
    return Agent()
"""


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_log_progress_prints_whole_lines_at_most_every_30_s() -> None:
    clock, out = FakeClock(), io.StringIO()
    bar = LogProgress(1000, "agent env seed0 meta-train", "step", file=out, clock=clock)
    for _ in range(100):  # 100 steps a second for 10 s: no line yet
        clock.t += 0.1
        bar.update()
        bar.update(9)
    assert out.getvalue() == ""
    clock.t += 25.0  # 35 s in, 1000 steps budget, 1000 done at the next update
    bar.update(0)
    assert out.getvalue() == "agent env seed0 meta-train: 1000/1000 step, 29 step/s, ETA 0.0 s\n"
    clock.t += 10.0
    bar.update(0)  # 10 s after the last line: nothing
    bar.close()
    bar.close()  # closing twice prints once
    lines = out.getvalue().splitlines()
    assert lines[1] == "agent env seed0 meta-train: 1000/1000 step in 45.0 s (22 step/s)"
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert PROGRESS_EVERY_S == 30.0


def test_log_progress_gives_an_eta_while_it_runs() -> None:
    clock, out = FakeClock(), io.StringIO()
    bar = LogProgress(400, "x meta-test", "ep", file=out, clock=clock)
    clock.t += 60.0
    bar.update(100)  # 100 of 400 in 60 s: 180 s to go
    clock.t += 29.0
    bar.update(10)
    assert out.getvalue().splitlines() == ["x meta-test: 100/400 ep, 1.7 ep/s, ETA 3 min 00 s"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm.auto import tqdm

    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = _tqdm(True, total=10, desc="d", unit="step")
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(_tqdm(True, total=10, desc="d", unit="step"), LogProgress)
    off = _tqdm(False, total=10, desc="d", unit="step")
    assert isinstance(off, tqdm) and off.disable


def test_evaluate_in_a_log_writes_one_line_per_phase_and_errors_on_their_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", BAD, "--env", POINT, "--tier", "smoke", "--seeds", "0-1", "--out", str(tmp_path)]
    assert main([*argv, "--config", "fail_seed=1"]) == 1
    printed = capsys.readouterr()
    assert "\r" not in printed.err
    phase = re.compile(r"bad_agent metabench/PointNav-v0 seed(\d) meta-(train|test): \d+/\d+ (step|ep) in ")
    lines = printed.err.splitlines()
    phases = [m.group(1, 2) for m in map(phase.match, lines) if m]
    assert phases == [("0", "train"), ("0", "test"), ("1", "train"), ("1", "test")]
    errors = [line for line in lines if "failed: RuntimeError: boom in act (seed 1)" in line]
    assert len(errors) == 1 and errors[0].startswith("metabench: error: bad_agent on")
    assert all(
        phase.match(line) or line.startswith(("metabench: error:", "2 record(s) written (1 ok, 1 error)"))
        for line in lines
    ), lines
    assert printed.out.splitlines() == [f"wrote {record_path(tmp_path, POINT, 'bad_agent', 0)}"]


def test_a_ray_worker_prints_to_stderr() -> None:
    """What a worker runs first: Python's and C's stdout go to its stderr (Ray shows a worker's stdout
    on the driver's stdout, among the ``wrote ...`` lines)."""
    code = (
        "import os, sys\n"
        "from metabench.parallel import _stdout_to_stderr\n"
        "print('before')\n"
        "_stdout_to_stderr()\n"
        "print('from python')\n"
        "sys.stdout.flush()\n"
        "os.write(1, b'from C\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "before\n"
    assert "from python\n" in done.stderr and "from C\n" in done.stderr


@pytest.mark.slow
def test_on_ray_stdout_holds_only_the_written_lines(tmp_path: Path) -> None:
    """Two workers, an agent that prints: stdout is the ``wrote`` lines and the summary, nothing else."""
    pytest.importorskip("ray")
    agent = tmp_path / "chatty.py"
    agent.write_text(CHATTY)
    out = tmp_path / "res"
    argv = [sys.executable, "-m", "metabench.cli", "evaluate", str(agent), "--env", POINT, "--tier", "smoke"]
    done = subprocess.run(
        [*argv, "--seeds", "0-1", "--workers", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(lines[:2]) == [f"wrote {record_path(out, POINT, 'chatty', s)}" for s in (0, 1)]
    assert lines[2:] == ["2 record(s) written (2 ok, 0 error), 0 skipped"]
    assert "agent says hi from seed 0" in done.stderr and "agent says hi from seed 1" in done.stderr


def test_progress_is_off_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["evaluate", BAD, "--env", POINT, "--tier", "smoke", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""
    assert harness.LogProgress is LogProgress
