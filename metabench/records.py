"""Result records: one JSON file per run (agent, env id, tier, seed), written atomically.

A record is a plain JSON object (schema ``"metabench.record/1"``)::

    {
     "schema": "metabench.record/1",
     "status": "ok" | "error",
     "run": {"agent", "agent_spec", "env_id", "tier", "seed", "oracle", "isolated" (optional), "config"},
     "provenance": {"metabench_version", "git_commit", "git_dirty", "packages", "python", "host",
                    "agent_sha256", "agent_imports_sha256" (optional), "split_hashes", "env_kwargs",
                    "budget": {"env_steps", "wall_clock_s"}, "env_steps_used", "wall_time_s",
                    "cpu_time_s" (optional), "started"},
     "protocol": {"n_adapt", "n_eval", "success_rule", "train_sample", "adapt_steps" (suites only)},
     "meta_train_curve": {"env_steps": [int, ...], <scalar>: [float | null, ...], ...},
     "episodes": {"split", "task_index", "episode", "phase", "return", "success", "length"},
     "error": null | {"type", "message", "traceback"}
    }

``agent_sha256`` is the agent file's; ``agent_imports_sha256`` maps each module the agent imports
from ``metabench.agents`` or its own folder to its file's sha256 (absent in records made before it
existed). ``cpu_time_s`` is the CPU seconds the run's process and its finished child processes used
(absent in records made before it was recorded): a unit's cost on one core, which the wall time on
a shared machine overstates. ``run.isolated`` is true for a run made with ``metabench evaluate
--isolate`` (every env in a separate process; absent in records made before it existed: false).
``meta_train_curve`` and ``episodes`` are columnar: every column of one has the same length.
``episodes`` holds one entry per meta-test episode; ``split`` is a test split name or
``"train-sample"`` (the fixed sample of train tasks), ``phase`` is ``"adapt"`` or ``"eval"``,
``success`` is null where the family defines no success. An error record has the same shape and
keeps whatever was measured before the failure.

A unit's record is ``OUT/<env id>/<agent>/seed<N>.json``. A rerun (``--force``) that fails never
replaces an ok record there: its error record goes beside it, ``seed<N>.error.json``
(:func:`rerun_error_path`), and ``metabench show`` and the leaderboard say so; a later ok run of
the unit removes it.

:func:`load_record` checks all of this and raises :class:`RecordError` naming the file and the field,
so a foreign or damaged JSON file in a records directory is rejected, not half-read.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA = "metabench.record/1"
STATUSES = ("ok", "error")
PHASES = ("adapt", "eval")
EPISODE_COLUMNS = ("split", "task_index", "episode", "phase", "return", "success", "length")


class RecordError(ValueError):
    """A file that is not a valid metabench record; the message names the file and the field."""


class OutputDirError(RecordError):
    """A directory that records or tables cannot be written to (found before any work is done)."""


#: Suffix of the error record a failed rerun leaves beside an ok record it must not replace.
RERUN_ERROR_SUFFIX = ".error.json"


def record_path(out_dir: str | Path, env_id: str, agent: str, seed: int) -> Path:
    """``<out>/<env id with "/" as "__">/<agent>/seed<N>.json``."""
    return Path(out_dir) / env_id.replace("/", "__") / agent / f"seed{int(seed)}.json"


def rerun_error_path(path: str | Path) -> Path:
    """Where the error record of a failed rerun goes when ``path`` holds an ok record:
    ``seed<N>.error.json`` beside it (an ok record is never replaced by an error record)."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".json") + RERUN_ERROR_SUFFIX)


def is_rerun_error(path: str | Path) -> bool:
    """True for a ``seed<N>.error.json`` file (see :func:`rerun_error_path`)."""
    return str(path).endswith(RERUN_ERROR_SUFFIX)


def check_writable_dir(path: str | Path, option: str) -> Path:
    """Make sure files can be written under ``path`` before any work is spent on them, creating
    nothing: ``path``, or the nearest of its parents that exists, must be a directory this process
    may write to. A read-only folder, a file in the way or a parent without permission is found now,
    in one line: :class:`OutputDirError` names the path, the problem and the option to change.
    """
    path = Path(path).expanduser()
    for part in (path, *path.parents):
        if not part.exists():
            continue
        if not part.is_dir():
            what = "it" if part == path else str(part)
            raise OutputDirError(
                f"cannot write to {path}: {what} is a file, not a directory; choose another {option}"
            )
        if not os.access(part, os.W_OK | os.X_OK):
            where = "" if part == path else f" (its parent {part} is not writable)"
            raise OutputDirError(
                f"cannot write to {path}: permission denied{where}; choose another {option} "
                "or fix its permissions"
            )
        break
    return path


def dumps(record: Mapping[str, Any]) -> str:
    """The record's JSON text: sorted keys, two-space indent, no NaN (so files diff and hash stably)."""
    return json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_record_atomic(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Validate ``record`` and write it to ``path`` through a temporary file and ``os.replace``.

    A reader never sees a half-written file: either the old file or the complete new one.
    """
    path = Path(path)
    validate_record(record, str(path))
    text = dumps(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a record is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_record(path: str | Path) -> dict[str, Any]:
    """Read and validate one record; :class:`RecordError` names the file and the bad field."""
    where = str(path)
    if Path(path).is_dir():
        raise RecordError(f"{where}: is a directory, not a record file (`metabench show DIR` lists one)")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RecordError(f"{where}: cannot read record: {exc.strerror or exc}") from exc
    try:
        # Decoded here, not by read_text: bytes that are not UTF-8 are as damaged as truncated JSON.
        record = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{where}: not valid JSON ({exc})") from exc
    validate_record(record, where)
    return record


def load_records(records_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``*.json`` under ``records_dir`` (sorted by path), each validated by :func:`load_record`.

    Raises :class:`RecordError` at the first file that is not a record (a foreign JSON file in a
    records directory is an error, not something to skip silently).
    """
    root = Path(records_dir)
    if root.is_file():
        raise RecordError(
            f"{root}: is a file, not a records directory (give the directory that holds the records)"
        )
    if not root.is_dir():
        raise RecordError(f"{root}: records directory does not exist")
    return [(p, load_record(p)) for p in sorted(root.rglob("*.json")) if not p.name.startswith(".")]


# ------------------------------------------------------------------------------------------ checks
def _fail(where: str, field: str, problem: str) -> RecordError:
    return RecordError(f"{where}: field {field!r}: {problem}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _opt_bool(v: Any) -> bool:
    return v is None or isinstance(v, bool)


def _opt_num(v: Any) -> bool:
    return v is None or _is_num(v)


def _nonneg_int(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _obj(rec: Mapping[str, Any], key: str, where: str, prefix: str = "") -> dict[str, Any]:
    name = prefix + key
    if key not in rec:
        raise _fail(where, name, "missing")
    value = rec[key]
    if not isinstance(value, dict):
        raise _fail(where, name, f"expected an object, got {type(value).__name__}")
    return value


def _check(obj: Mapping[str, Any], key: str, ok: Any, what: str, where: str, prefix: str) -> Any:
    name = prefix + key
    if key not in obj:
        raise _fail(where, name, "missing")
    if not ok(obj[key]):
        raise _fail(where, name, f"expected {what}, got {obj[key]!r:.80}")
    return obj[key]


def _list_of(obj: Mapping[str, Any], key: str, ok: Any, what: str, where: str, prefix: str) -> list[Any]:
    name = prefix + key
    if key not in obj:
        raise _fail(where, name, "missing")
    col = obj[key]
    if not isinstance(col, list):
        raise _fail(where, name, f"expected a list of {what}, got {type(col).__name__}")
    for i, v in enumerate(col):
        if not ok(v):
            raise _fail(where, f"{name}[{i}]", f"expected {what}, got {v!r:.80}")
    return col


def validate_record(record: Any, where: str = "<record>") -> None:
    """Raise :class:`RecordError` unless ``record`` follows schema ``metabench.record/1``."""
    if not isinstance(record, dict):
        raise RecordError(f"{where}: not a metabench record (a JSON {type(record).__name__}, not an object)")
    if record.get("schema") != SCHEMA:
        raise _fail(where, "schema", f"expected {SCHEMA!r}, got {record.get('schema')!r:.80} (not a record?)")
    status = _check(record, "status", lambda v: v in STATUSES, f"one of {STATUSES}", where, "")

    run = _obj(record, "run", where)
    for key in ("agent", "agent_spec", "env_id", "tier"):
        _check(run, key, _is_str, "a string", where, "run.")
    _check(run, "seed", _is_int, "an integer", where, "run.")
    _check(run, "oracle", lambda v: isinstance(v, bool), "true or false", where, "run.")
    if "isolated" in run:  # optional: records made before --isolate existed lack it
        _check(run, "isolated", lambda v: isinstance(v, bool), "true or false", where, "run.")
    _obj(run, "config", where, "run.")

    prov = _obj(record, "provenance", where)
    for key in ("metabench_version", "python", "host", "agent_sha256", "started"):
        _check(prov, key, _is_str, "a string", where, "provenance.")
    _check(prov, "git_commit", _opt_str, "a string or null", where, "provenance.")
    _check(prov, "git_dirty", _opt_bool, "true, false or null", where, "provenance.")
    for key in ("packages", "split_hashes", "agent_imports_sha256"):
        if key == "agent_imports_sha256" and key not in prov:
            continue  # optional: records made before it was recorded lack it
        d = _obj(prov, key, where, "provenance.")
        for k, v in d.items():
            if not isinstance(v, str):
                raise _fail(where, f"provenance.{key}.{k}", f"expected a string, got {v!r:.80}")
    _obj(prov, "env_kwargs", where, "provenance.")
    budget = _obj(prov, "budget", where, "provenance.")
    _check(budget, "env_steps", _nonneg_int, "a non-negative integer", where, "provenance.budget.")
    _check(budget, "wall_clock_s", _opt_num, "a number or null", where, "provenance.budget.")
    _check(prov, "env_steps_used", _nonneg_int, "a non-negative integer", where, "provenance.")
    _check(
        prov, "wall_time_s", lambda v: _is_num(v) and v >= 0, "a non-negative number", where, "provenance."
    )
    if "cpu_time_s" in prov:  # optional: records made before it was recorded lack it
        _check(
            prov, "cpu_time_s", lambda v: _is_num(v) and v >= 0, "a non-negative number", where, "provenance."
        )

    proto = _obj(record, "protocol", where)
    for key in ("n_adapt", "n_eval", "train_sample"):
        _check(proto, key, _nonneg_int, "a non-negative integer", where, "protocol.")
    _check(proto, "success_rule", lambda v: v in ("final", "any"), "'final' or 'any'", where, "protocol.")

    curve = _obj(record, "meta_train_curve", where)
    steps = _list_of(curve, "env_steps", _nonneg_int, "non-negative integers", where, "meta_train_curve.")
    for key in curve:
        if key == "env_steps":
            continue
        col = _list_of(curve, key, _opt_num, "numbers or null", where, "meta_train_curve.")
        if len(col) != len(steps):
            raise _fail(
                where, f"meta_train_curve.{key}", f"has {len(col)} entries, env_steps has {len(steps)}"
            )

    eps = _obj(record, "episodes", where)
    p = "episodes."
    cols = [
        _list_of(eps, "split", _is_str, "strings", where, p),
        _list_of(eps, "task_index", _nonneg_int, "non-negative integers", where, p),
        _list_of(eps, "episode", _nonneg_int, "non-negative integers", where, p),
        _list_of(eps, "phase", lambda v: v in PHASES, f"one of {PHASES}", where, p),
        _list_of(eps, "return", _is_num, "finite numbers", where, p),
        _list_of(eps, "success", _opt_bool, "true, false or null", where, p),
        _list_of(eps, "length", _nonneg_int, "non-negative integers", where, p),
    ]
    n = len(cols[0])
    for name, col in zip(EPISODE_COLUMNS, cols, strict=True):
        if len(col) != n:
            raise _fail(where, p + name, f"has {len(col)} entries, episodes.split has {n}")
    unknown = sorted(set(eps) - set(EPISODE_COLUMNS))
    if unknown:
        raise _fail(where, p + unknown[0], f"unknown column; valid: {list(EPISODE_COLUMNS)}")

    if "error" not in record:
        raise _fail(where, "error", "missing")
    error = record["error"]
    if status == "ok":
        if error is not None:
            raise _fail(where, "error", "must be null when status is 'ok'")
    else:
        if not isinstance(error, dict):
            raise _fail(where, "error", "must be an object when status is 'error'")
        for key in ("type", "message", "traceback"):
            _check(error, key, _is_str, "a string", where, "error.")


# ----------------------------------------------------------------------------------------- summaries
def _episodes_frame(record: Mapping[str, Any]) -> Any:
    import pandas as pd

    return pd.DataFrame(record["episodes"])


def summary_text(record: Mapping[str, Any], where: str = "") -> str:
    """A human summary of one record: what ran, provenance, and the mean return per episode index
    and split (over tasks), as printed by ``metabench show RECORD``."""
    import pandas as pd

    run, prov, proto = record["run"], record["provenance"], record["protocol"]
    budget = prov["budget"]
    git = prov["git_commit"] or "unknown"
    if prov["git_dirty"]:
        git += " (dirty)"
    lines = [
        f"record     {where}" if where else "",
        f"status     {record['status']}",
        f"agent      {run['agent']} ({run['agent_spec']}){' [oracle]' if run['oracle'] else ''}"
        f"{' [isolated]' if run.get('isolated') else ''}, "
        f"sha256 {prov['agent_sha256'][:16]}",
        f"run        {run['env_id']}, tier {run['tier']}, seed {run['seed']}",
        f"config     {json.dumps(run['config'], sort_keys=True)}",
        f"budget     {prov['env_steps_used']} of {budget['env_steps']} env steps used"
        + (f", wall clock {budget['wall_clock_s']:g} s" if budget["wall_clock_s"] is not None else ""),
        f"protocol   {proto['n_adapt']} adaptation + {proto['n_eval']} evaluation episodes per task, "
        f"success rule {proto['success_rule']!r}, {proto['train_sample']} train tasks sampled",
        f"provenance metabench {prov['metabench_version']}, git {git}, python {prov['python']}, "
        f"host {prov['host']}, started {prov['started']}, wall time {prov['wall_time_s']:.1f} s"
        + (f", CPU time {prov['cpu_time_s']:.1f} s" if "cpu_time_s" in prov else ""),
        "packages   " + ", ".join(f"{k} {v}" for k, v in sorted(prov["packages"].items())),
        "splits     " + ", ".join(f"{k} {v[:12]}" for k, v in prov["split_hashes"].items()),
    ]
    lines = [line for line in lines if line]
    curve = record["meta_train_curve"]
    if curve["env_steps"]:
        last = {k: v[-1] for k, v in curve.items() if k != "env_steps"}
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items())
        lines.append(
            f"curve      {len(curve['env_steps'])} points; last at {curve['env_steps'][-1]} steps: {shown}"
        )
    df = _episodes_frame(record)
    if len(df):
        splits = list(pd.unique(df["split"]))
        table = df.pivot_table(index=["episode", "phase"], columns="split", values="return", aggfunc="mean")
        table = table[splits].reset_index()
        table.columns.name = None
        lines += ["", "mean return per episode index (over tasks):"]
        lines += [table.to_markdown(index=False, floatfmt=".3f")]
        evals = df[df["phase"] == "eval"]
        rows = []
        for split in splits:
            part = evals[evals["split"] == split]
            succ = [s for s in part["success"] if s is not None]
            rows.append(
                {
                    "split": split,
                    "tasks": int(df[df["split"] == split]["task_index"].nunique()),
                    "eval return": float(part["return"].mean()) if len(part) else float("nan"),
                    "eval success": float(sum(succ) / len(succ)) if succ else None,
                }
            )
        lines += ["", pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f")]
    if record["error"] is not None:
        err = record["error"]
        lines += ["", f"error      {err['type']}: {err['message']}", "", err["traceback"].rstrip()]
    return "\n".join(lines)


def summary_table(records: list[tuple[str, Mapping[str, Any]]]) -> str:
    """One line per record (env, agent, seed, status, steps, mean eval return on each split)."""
    import pandas as pd

    rows = []
    for where, record in records:
        run, prov = record["run"], record["provenance"]
        row: dict[str, Any] = {
            "env_id": run["env_id"],
            "agent": run["agent"]
            + (" (oracle)" if run["oracle"] else "")
            + (" (isolated)" if run.get("isolated") else ""),
            "tier": run["tier"],
            "seed": run["seed"],
            "status": record["status"] + (" (failed rerun; ok record kept)" if is_rerun_error(where) else ""),
            "env_steps": prov["env_steps_used"],
        }
        df = _episodes_frame(record)
        if len(df):
            evals = df[df["phase"] == "eval"]
            for split, part in evals.groupby("split", sort=False):
                row[f"{split} eval return"] = float(part["return"].mean())
        row["record"] = where
        rows.append(row)
    if not rows:
        return "no records"
    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f")
