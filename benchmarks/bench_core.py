"""Core speed target (issue 2): HalfCheetahVel-v0 against Gymnasium's HalfCheetah-v5.

Run with ``make bench``. Targets: steps/s ratio >= 1.0 against HalfCheetah-v5 (both made with
gym.make, so both carry the same wrappers). ``set_task`` costs are in bench_set_task.py.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco

from .conftest import env_stepper, interleaved_rates, report

VEL = "metabench/HalfCheetahVel-v0"
N = 2000


def test_half_cheetah_vel_steps_vs_gymnasium(benchmark) -> None:
    ours, ref = gym.make(VEL), gym.make("HalfCheetah-v5")
    rates = interleaved_rates({"ours": env_stepper(ours, N), "gymnasium": env_stepper(ref, N)}, N)
    ratio = rates["ours"] / rates["gymnasium"]
    raw_model = ours.unwrapped.model
    raw_data = mujoco.MjData(raw_model)

    def raw() -> None:
        for _ in range(N):
            mujoco.mj_step(raw_model, raw_data, nstep=5)

    raw_rate = interleaved_rates({"raw": raw}, N, rounds=3)["raw"]
    report(
        benchmark,
        ours_steps_per_s=rates["ours"],
        gymnasium_steps_per_s=rates["gymnasium"],
        ratio_vs_gymnasium=ratio,
        raw_mujoco_steps_per_s=raw_rate,
    )
    benchmark.pedantic(env_stepper(ours, N), rounds=3, iterations=1)
    assert ratio >= 1.0, f"HalfCheetahVel-v0 runs at {ratio:.2f}x HalfCheetah-v5 (target >= 1.0x)"
