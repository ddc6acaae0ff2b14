"""The ``metabench`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np


def _cmd_list(args: argparse.Namespace) -> int:
    import pandas as pd

    from metabench.registration import ENVS
    from metabench.tasks import split_hash, split_names, tasks

    rows = []
    for entry in ENVS:
        if args.filter and args.filter not in entry.id:
            continue
        for split in split_names(entry.id):
            rows.append(
                {
                    "id": entry.id,
                    "split": split,
                    "tasks": len(tasks(entry.id, split)),
                    "steps": entry.max_episode_steps,
                    "sha256": split_hash(entry.id, split)[:16],
                }
            )
    print(pd.DataFrame(rows).to_markdown(index=False))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """A short rollout of a random policy on a few test tasks of each family, as a table."""
    import gymnasium as gym
    import pandas as pd

    from metabench.registration import ENVS
    from metabench.tasks import tasks

    rows = []
    for entry in ENVS:
        env = gym.make(entry.id)
        env.action_space.seed(args.seed)
        for task in tasks(entry.id, "test")[: args.tasks]:
            obs, info = env.reset(seed=args.seed, options={"task": task})
            ret, done, n = 0.0, False, 0
            while not done:
                obs, r, term, trunc, info = env.step(env.action_space.sample())
                ret, n, done = ret + float(r), n + 1, term or trunc
            rows.append(
                {"id": entry.id, "task": task.index, "params": task.params, "return": ret, "steps": n}
            )
        env.close()
    df = pd.DataFrame(rows)
    df["params"] = df["params"].map(lambda p: {k: np.round(v, 3).tolist() for k, v in p.items()})
    print("Random-policy returns on test tasks (seed %d):\n" % args.seed)
    print(df.to_markdown(index=False, floatfmt=".2f"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metabench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="ids, splits, split sizes and split hashes")
    p.add_argument("--filter", default="", help="only ids containing this text")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("demo", help="a random-policy rollout on a few test tasks of each family")
    p.add_argument("--tasks", type=int, default=3, help="test tasks per family")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
