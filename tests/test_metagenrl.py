"""MetaGenRL (agents/metagenrl.py): the objective's invariances, its second-order meta-gradient, the
window buffer, save/load, a smoke run on the ci suite, and a slow learnability test."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from metabench.harness import run
from metabench.suite_harness import prepare_suite_units

AGENT_FILE = Path(__file__).resolve().parent.parent / "agents" / "metagenrl.py"
CI_SUITE = "suite/PendulumReacher-v0"


def _load():
    spec = importlib.util.spec_from_file_location("metagenrl_under_test", AGENT_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mg = _load()
TINY = {
    "hidden": 8,
    "layers": 1,
    "obj_units": 4,
    "obj_lstm": 4,
    "obj_value_units": 2,
    "trajectory_len": 3,
    "batch_trajectories": 2,
}


def batch(b: int, t: int, obs_dim: int, act_dim: int, seed: int = 0, dtype=torch.float32) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t
    mask = (torch.arange(t)[None] < lengths[:, None]).to(dtype)
    return {
        "obs": torch.randn(b, t, obs_dim, generator=g, dtype=dtype),
        "act": torch.rand(b, t, act_dim, generator=g, dtype=dtype) * 2 - 1,
        "rew": torch.randn(b, t, generator=g, dtype=dtype) * mask,
        "next_obs": torch.randn(b, t, obs_dim, generator=g, dtype=dtype),
        "term": (torch.rand(b, t, generator=g) < 0.1).to(dtype) * mask,
        "mask": mask,
    }


def objective(config: mg.Config, seed: int = 0) -> mg.Objective:
    return mg.init_(mg.Objective(config), torch.Generator().manual_seed(seed))


def test_objective_is_invariant_to_the_action_dimension() -> None:
    c = mg.Config(**{**TINY, "trajectory_len": 5})
    obj = objective(c)
    n_params = sum(p.numel() for p in obj.parameters())
    for act_dim in (1, 2, 6):
        b = batch(4, 5, 3, act_dim)
        pi = torch.rand(4, 5, act_dim) * 2 - 1
        v, v_next = torch.randn(4, 5), torch.randn(4, 5)
        out = obj(b, pi, v, v_next)
        assert out.shape == (4, 5) and torch.isfinite(out).all()
        assert (out.abs() <= 1 / c.error_scale).all()  # bounded
        # the action encoding is a mean over dimensions: their order does not matter
        perm = torch.randperm(act_dim, generator=torch.Generator().manual_seed(1))
        b2 = {**b, "act": b["act"][..., perm]}
        torch.testing.assert_close(obj(b2, pi[..., perm], v, v_next), out)
    assert n_params == sum(p.numel() for p in objective(c).parameters())


def test_objective_runs_backwards_in_time_from_the_last_valid_step() -> None:
    c = mg.Config(**{**TINY, "trajectory_len": 6})
    obj = objective(c)
    b = batch(3, 6, 2, 2, seed=3)
    b["mask"][1, 4:] = 0.0  # window 1 has 4 valid steps
    pi, v, v_next = torch.rand(3, 6, 2), torch.randn(3, 6), torch.randn(3, 6)
    out = obj(b, pi, v, v_next)
    pi2 = pi.clone()
    pi2[:, 2] += 0.5  # change the policy's action at step 2 only
    out2 = obj(b, pi2, v, v_next)
    assert torch.equal(out[:, 3:], out2[:, 3:])  # later steps cannot see it (backwards in time)
    assert not torch.allclose(out[:, :3], out2[:, :3])  # step 2 and earlier do
    # padding after a window's last valid step does not change its valid steps' errors (the
    # normalisation statistics aside, which use valid steps only)
    b3 = {k: v_.clone() for k, v_ in b.items()}
    b3["act"][1, 4:] = 5.0
    pi3 = pi.clone()
    pi3[1, 4:] = -3.0
    torch.testing.assert_close(obj(b3, pi3, v, v_next)[1, :4], out[1, :4])


def _reference_meta_loss(
    policy: torch.nn.Module, q1: torch.nn.Module, obj: mg.Objective, b: dict, inner_lr: float
) -> float:
    """The meta-loss written out by hand: a plain first-order SGD step of Σ L_α on the first half of the
    batch (no create_graph, no functional_call), then -mean Q₁(s, π_θ'(s)) on the whole batch."""
    n = b["mask"].shape[0] // 2
    inner = {k: v[:n] for k, v in b.items()}
    with torch.no_grad():
        v = q1(inner["obs"], policy(inner["obs"]))
        v_next = q1(inner["next_obs"], policy(inner["next_obs"]))
    stepped = copy.deepcopy(policy)
    stepped.zero_grad()
    loss = (obj(inner, stepped(inner["obs"]), v, v_next) * inner["mask"]).sum()  # a sum, as the original
    loss.backward()
    with torch.no_grad():
        for p in stepped.parameters():
            p -= inner_lr * p.grad
        q = q1(b["obs"], stepped(b["obs"]))
        return float(-(q * b["mask"]).sum() / b["mask"].sum())


def test_meta_gradient_reaches_alpha_through_the_inner_step() -> None:
    c = mg.Config(**TINY, inner_lr=0.5, grad_clip=1e9)
    gen = torch.Generator().manual_seed(0)
    policy = mg.init_(mg.Policy(3, 2, c), gen).double()
    q1 = mg.init_(mg.Critic(3, 2, c), gen).double()
    obj = objective(c).double()
    b = batch(4, 3, 3, 2, seed=5, dtype=torch.float64)
    grads, loss = mg.meta_gradient(policy, q1, obj, b, c)
    assert loss == pytest.approx(_reference_meta_loss(policy, q1, obj, b, c.inner_lr), rel=1e-10)
    flat = torch.cat([g.reshape(-1) for g in grads])
    assert flat.abs().max() > 1e-6  # α reaches the meta-loss, only through the inner step
    params = list(obj.parameters())
    sizes = [p.numel() for p in params]
    rng = np.random.default_rng(0)
    checked = 0
    for j in rng.choice(flat.numel(), size=12, replace=False):
        k = int(np.searchsorted(np.cumsum(sizes), j, side="right"))
        i = int(j - (np.cumsum(sizes)[k - 1] if k else 0))
        eps = 1e-6
        values = []
        for sign in (1.0, -1.0):
            o = copy.deepcopy(obj)
            with torch.no_grad():
                list(o.parameters())[k].view(-1)[i] += sign * eps
            values.append(_reference_meta_loss(policy, q1, o, b, c.inner_lr))
        fd = (values[0] - values[1]) / (2 * eps)
        assert float(flat[j]) == pytest.approx(fd, rel=1e-4, abs=1e-9)
        checked += abs(fd) > 1e-7
    assert checked >= 6
    # without the inner step (η = 0) the meta-loss does not depend on α at all
    zero, _ = mg.meta_gradient(policy, q1, obj, b, mg.Config(**TINY, inner_lr=0.0, grad_clip=1e9))
    assert all(float(g.abs().max()) == 0.0 for g in zero)


def test_window_buffer_keeps_windows_inside_one_episode() -> None:
    buf = mg.WindowBuffer(1, 1, 50)
    for i in range(40):  # episodes of 7 steps, the last one unfinished
        buf.add([i], np.zeros(1), float(i), [i + 1], terminated=False, done=i % 7 == 6)
    out = buf.sample(200, 5, np.random.default_rng(0))
    mask = out["mask"].numpy()
    obs = out["obs"][..., 0].numpy()
    assert (np.diff(mask, axis=1) <= 0).all() and (mask[:, 0] == 1).all()  # a valid prefix
    for row, m in zip(obs, mask, strict=True):
        valid = row[m > 0]
        assert (np.diff(valid) == 1).all() and len({int(v) // 7 for v in valid}) == 1
        assert valid.max() <= 39


def test_save_load_round_trip(tmp_path: Path) -> None:
    agent = mg.make_agent(mg.Config(**TINY))
    mg.init_(agent.objective, torch.Generator().manual_seed(4))
    agent.seed = 7
    agent.save(tmp_path)
    loaded = mg.MetaGenRLAgent.load(tmp_path)
    assert loaded.config == agent.config and loaded.seed == 7
    for a, b in zip(
        agent.objective.state_dict().values(), loaded.objective.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    obs_space = spaces.Box(-1, 1, (3,))
    act_space = spaces.Box(-2, 2, (1,))
    actions = []
    for x in (agent, loaded):
        x.begin_trial(obs_space, act_space)
        x.learner.steps = 10**6  # past the random steps: the (freshly seeded) policy acts
        actions.append(x.act(np.ones(3, np.float32), explore=False))
    np.testing.assert_array_equal(actions[0], actions[1])
    assert ((-2 <= actions[0]) & (actions[0] <= 2)).all()


def test_smoke_run_on_the_ci_suite(tmp_path: Path) -> None:
    (unit,) = prepare_suite_units(str(AGENT_FILE), [CI_SUITE], "smoke", [0], tmp_path)
    record = run(unit)
    assert record["status"] == "ok", record["error"]
    prov = record["provenance"]
    # every agent of the population steps: together exactly the budget
    assert prov["env_steps_used"] == prov["budget"]["env_steps"] == 400
    curve = record["meta_train_curve"]
    assert curve["env_steps"][-1] == 400 and all(
        any(v is not None for v in curve[k]) for k in ("meta_loss", "alignment")
    )
    assert (
        sum(
            n
            for n, p in zip(record["episodes"]["length"], record["episodes"]["phase"], strict=True)
            if p == "adapt"
        )
        == 300
    )


#: The learnability test's scale: the ci suite and ci settings with a 6k budget (2 agents x 3k steps)
#: and 3k adaptation steps, updates from 500 steps: about 10 CPU-minutes for both runs.
SMALL = {"random_steps": "500", "update_after": "500", "anneal_steps": "1000"}


@pytest.mark.slow
@pytest.mark.xfail(
    run=False,
    reason="measured 2026-11-30 (seed 0, this scale) before the inner step became the original's sum: eval "
    "return 4.0 trained vs 2.0 with objective updates disabled (random 6.8, from_scratch 83.4); after it: "
    "5.2 trained (frozen 2.0); with objective_delay=1 5.6. The learned objective shrinks the action "
    "(the zero action scores 25.2 here): not learning on the held-out env (agents/metagenrl.py's docstring)",
)
def test_learned_objective_beats_an_untrained_one_on_the_held_out_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The meta-trained objective trains a fresh agent on InvertedPendulum (held out) to a clearly higher
    evaluation return than the same objective with its updates disabled (``objective_lr=0``: policies
    then follow the random initial objective), and above what a policy that does nothing scores: the
    constant action 0 scores 25.2 on InvertedPendulum-v5 (the bound 3 scores 2.0, the frozen control's
    score), so beating random (6.8) alone would not show learning. Seed 0."""
    import dataclasses
    from types import MappingProxyType

    from metabench import suites

    s = suites.SUITES[CI_SUITE]
    small = dataclasses.replace(
        s,
        budgets=MappingProxyType({**s.budgets, "ci": 6000}),
        adapt_steps=MappingProxyType({**s.adapt_steps, "ci": 3000}),
        n_eval=MappingProxyType({**s.n_eval, "ci": 5}),
    )
    monkeypatch.setattr(suites, "SUITES", MappingProxyType({**suites.SUITES, CI_SUITE: small}))
    finals = {}
    for name, overrides in (("trained", SMALL), ("frozen", {**SMALL, "objective_lr": "0"})):
        (unit,) = prepare_suite_units(
            str(AGENT_FILE), [CI_SUITE], "ci", [0], tmp_path / name, config_overrides=overrides
        )
        record = run(unit)
        assert record["status"] == "ok", record["error"]
        eps = record["episodes"]
        finals[name] = np.mean([r for r, p in zip(eps["return"], eps["phase"], strict=True) if p == "eval"])
    assert finals["trained"] > finals["frozen"] + 20, finals
    assert finals["trained"] > 35, finals  # the zero action scores 25.2: a constant action is not learning
