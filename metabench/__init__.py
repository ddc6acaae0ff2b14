"""metabench: a Gymnasium benchmark for meta-reinforcement learning.

``import metabench`` registers every ``metabench/*`` id with Gymnasium (as ``ale_py`` does), so that
``gymnasium.make("metabench/HalfCheetahVel-v0")`` works; ``gymnasium.make("metabench:metabench/...")``
imports it on demand.
"""

from metabench.gl import choose_backend

# First: MuJoCo reads MUJOCO_GL once, when something imports it (metabench/gl.py says what is chosen).
choose_backend()

from metabench.registration import register_envs  # noqa: E402
from metabench.tasks import Param, Task, TaskError, TaskFamily, split_hash, split_names, tasks  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Param",
    "Task",
    "TaskError",
    "TaskFamily",
    "__version__",
    "split_hash",
    "split_names",
    "tasks",
]

register_envs()
