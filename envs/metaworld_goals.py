"""Regenerate the frozen Meta-World goal sets in ``envs/assets/metaworld/`` from Meta-World's own sampling.

Meta-World draws 50 goal vectors (``rand_vec``: object and goal positions) per task class when a
benchmark is constructed, from the benchmark's seed, and keeps them as pickled bytes inside
``metaworld.Task``. metabench freezes one draw, made once with the documented seed
:data:`~metabench.envs.metaworld_names.GOAL_SEED`, as JSON float vectors:

* ``ml1_goals.json``: for each of the 50 classes, ``metaworld.ML1(name, seed=GOAL_SEED)``'s train goals
  and its test goals (Meta-World draws ML1's test goals from ``seed + 1``);
* ``ml10_goals.json`` / ``ml45_goals.json``: ``metaworld.ML10(seed=GOAL_SEED)`` /
  ``metaworld.ML45(seed=GOAL_SEED)``'s goals of each train and each test class;
* ``classes.json``: each class's ``task_id`` and the box its goal vectors are drawn from
  (``_random_reset_space``), which metabench uses to validate and normalise task parameters.

Floats are written with Python's shortest round-trip ``repr``, so the JSON holds Meta-World's vectors
bit for bit. Run it (about 2 minutes: ``ML45`` alone takes most of it)::

    .venv/bin/python -m metabench.envs.metaworld_goals            # rewrite the JSON files
    .venv/bin/python -m metabench.envs.metaworld_goals --print-hashes

then paste the printed split hashes into ``envs/metaworld_names.py``. A changed goal set changes the
hashes, and a changed split needs new ``-vN`` ids.

This module imports Meta-World; nothing else in metabench imports it. Reading ``metaworld.Task.data``
needs ``pickle.loads``: these are bytes Meta-World has just made in this process, and it is the only
place metabench unpickles anything. At run time the envs read the JSON only.
"""

from __future__ import annotations

import argparse
import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metabench.envs.metaworld_names import (
    BENCHMARK_CLASSES,
    GOAL_SEED,
    GOALS_PER_CLASS,
    METAWORLD_VERSION,
    ML1_IDS,
    ML1_NAMES,
)

ASSETS = Path(__file__).resolve().parent / "assets" / "metaworld"
GENERATOR = "python -m metabench.envs.metaworld_goals"


def _rand_vecs(tasks: Sequence[Any], name: str) -> list[list[float]]:
    """The goal vectors of Meta-World ``tasks`` of class ``name``, in Meta-World's order."""
    out = []
    for task in tasks:
        if task.env_name != name:
            continue
        data = pickle.loads(task.data)
        if data["partially_observable"] is not True:
            raise RuntimeError(f"{name}: expected a goal-hidden (ML) task, got {sorted(data)}")
        out.append([float(v) for v in data["rand_vec"]])
    if len(out) != GOALS_PER_CLASS:
        raise RuntimeError(f"{name}: Meta-World made {len(out)} goals, expected {GOALS_PER_CLASS}")
    return out


def ml1_goals(name: str, seed: int = GOAL_SEED) -> dict[str, list[list[float]]]:
    """``metaworld.ML1(name, seed)``'s train and test goal vectors."""
    import metaworld

    bench = metaworld.ML1(name, seed=seed)
    return {"train": _rand_vecs(bench.train_tasks, name), "test": _rand_vecs(bench.test_tasks, name)}


def benchmark_goals(benchmark: str, seed: int = GOAL_SEED) -> dict[str, dict[str, list[list[float]]]]:
    """``metaworld.ML10(seed)``'s or ``metaworld.ML45(seed)``'s goal vectors, by split and class."""
    import metaworld

    if benchmark not in BENCHMARK_CLASSES:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid: {', '.join(BENCHMARK_CLASSES)}")
    bench = getattr(metaworld, benchmark)(seed=seed)
    train_names, test_names = BENCHMARK_CLASSES[benchmark]
    if tuple(bench.train_classes) != train_names or tuple(bench.test_classes) != test_names:
        raise RuntimeError(f"Meta-World's {benchmark} classes differ from metaworld_names.py's")
    return {
        "train": {n: _rand_vecs(bench.train_tasks, n) for n in train_names},
        "test": {n: _rand_vecs(bench.test_tasks, n) for n in test_names},
    }


def class_bounds() -> dict[str, dict[str, Any]]:
    """Each class's ``task_id`` and the box Meta-World draws its goal vectors from."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    if tuple(ALL_V3_ENVIRONMENTS) != ML1_NAMES:
        raise RuntimeError("Meta-World's class list differs from metaworld_names.ML1_NAMES")
    out = {}
    for task_id, (name, cls) in enumerate(ALL_V3_ENVIRONMENTS.items()):
        env = cls()
        box = env._random_reset_space
        out[name] = {
            "task_id": task_id,
            "rand_vec_low": [float(v) for v in box.low],
            "rand_vec_high": [float(v) for v in box.high],
        }
        env.close()
    return out


def _format(obj: Any, indent: int = 0) -> str:
    """JSON with one goal vector per line (readable diffs, no float on its own line)."""
    pad = " " * indent
    if isinstance(obj, dict):
        items = [f"{pad} {json.dumps(k)}: {_format(v, indent + 1).lstrip()}" for k, v in obj.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and isinstance(obj[0], list):
        rows = [pad + " " + json.dumps(row, allow_nan=False) for row in obj]
        return pad + "[\n" + ",\n".join(rows) + "\n" + pad + "]"
    return pad + json.dumps(obj, allow_nan=False)


def _write(path: Path, payload: dict[str, Any]) -> None:
    text = _format(payload) + "\n"
    if json.loads(text) != payload:  # the pretty form must hold exactly the same numbers
        raise RuntimeError(f"formatting {path.name} changed its content")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    print(f"wrote {path} ({len(text) / 1e3:.0f} kB)")


def _header(seed: int, how: str) -> dict[str, Any]:
    return {"metaworld_version": METAWORLD_VERSION, "seed": seed, "generator": GENERATOR, "how": how}


def generate(out: Path, seed: int, only: Sequence[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if "classes" in only:
        _write(out / "classes.json", {"metaworld_version": METAWORLD_VERSION, "classes": class_bounds()})
    if "ml1" in only:
        how = "metaworld.ML1(name, seed=seed): train_tasks (seed) and test_tasks (seed + 1)"
        goals = {name: ml1_goals(name, seed) for name in ML1_NAMES}
        _write(out / "ml1_goals.json", {**_header(seed, how), "goals": goals})
    for bench in ("ML10", "ML45"):
        if bench.lower() in only:
            how = f"metaworld.{bench}(seed=seed): train_tasks and test_tasks, by class"
            _write(
                out / f"{bench.lower()}_goals.json",
                {**_header(seed, how), "goals": benchmark_goals(bench, seed)},
            )


def print_hashes() -> None:
    """The ``SPLIT_HASHES`` literal for envs/metaworld_names.py, from the JSON files as they are."""
    import metabench  # noqa: F401 - registers the ids
    from metabench.tasks import compute_split_hashes

    print("SPLIT_HASHES: dict[str, dict[str, str]] = {")
    for env_id in (*ML1_IDS, "metabench/ML10-v0", "metabench/ML45-v0"):
        hashes = compute_split_hashes(env_id)
        print(f'    "{env_id}": {{')
        for split, digest in hashes.items():
            print(f'        "{split}": "{digest}",')
        print("    },")
    print("}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=GOAL_SEED, help="Meta-World benchmark seed")
    parser.add_argument("--out", type=Path, default=ASSETS, help="folder for the JSON files")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("classes", "ml1", "ml10", "ml45"),
        default=("classes", "ml1", "ml10", "ml45"),
        help="regenerate only these files",
    )
    parser.add_argument("--print-hashes", action="store_true", help="print SPLIT_HASHES and exit")
    args = parser.parse_args(argv)
    if args.print_hashes:
        print_hashes()
    else:
        generate(args.out, args.seed, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
