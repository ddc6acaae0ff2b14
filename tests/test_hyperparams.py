"""Agents' hyperparameter files (``agents/hyperparams/<agent>.toml``, read by ``build_config``)."""

from __future__ import annotations

import configparser
import dataclasses
import textwrap
from pathlib import Path

import pytest

from metabench.harness import agent_imports_sha256
from metabench.protocol import TIER_NAMES, AgentError, build_config, load_agent_module, load_hyperparams
from metabench.tasks import metabench_ids

ROOT = Path(__file__).parents[1]
POINT, BANDIT = "metabench/PointNav-v0", "metabench/Bandit-v0"
REFERENCE_AGENTS = ("random_agent", "no_context", "explicit_context", "rl2", "pearl")

AGENT_SOURCE = """
import dataclasses

@dataclasses.dataclass
class Config:
    a: int = 0
    b: int = 0
    c: int = 0
    d: int = 0
    e: int = 0
    f: int = 0
    g: int = 0
    sizes: tuple[int, ...] = (1,)

TIERS = {"ci": {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1}}
ENV_TIERS = {"metabench/PointNav-v0": {"ci": {"c": 3, "d": 3, "e": 3, "f": 3}}}

def make_agent(config):
    return None
"""


def write_agent(folder: Path, toml: str | None, name: str = "my_agent") -> Path:
    path = folder / f"{name}.py"
    path.write_text(AGENT_SOURCE)
    if toml is not None:
        (folder / "hyperparams").mkdir(exist_ok=True)
        (folder / "hyperparams" / f"{name}.toml").write_text(textwrap.dedent(toml))
    return path


def test_layers_apply_in_order(tmp_path: Path) -> None:
    """Defaults < TIERS < file [tier] < ENV_TIERS < file [tier."env"] < TOML < --config."""
    agent = write_agent(
        tmp_path,
        """
        [ci]
        b = 2
        c = 2
        d = 2
        e = 2
        f = 2
        sizes = [8, 8]
        [ci."metabench/PointNav-v0"]
        d = 4
        e = 4
        f = 4
        """,
    )
    module = load_agent_module(str(agent))
    config = build_config(module, "ci", toml={"e": 5, "f": 5}, overrides={"f": "6"}, env_id=POINT)
    assert dataclasses.astuple(config) == (1, 2, 3, 4, 5, 6, 0, (8, 8))
    assert config.sizes == (8, 8)  # a TOML array becomes the field's tuple
    other_env = build_config(module, "ci", env_id=BANDIT)
    assert dataclasses.astuple(other_env) == (1, 2, 2, 2, 2, 2, 0, (8, 8))
    assert dataclasses.astuple(build_config(module, "smoke", env_id=POINT)) == (0,) * 7 + ((1,),)


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ("[ci]\nnope = 1\n", r"my_agent.toml: \[ci\] sets unknown config key\(s\) \['nope'\]"),
        ('[ci."metabench/PointNav-v0"]\nnope = 1\n', r"\[ci.\"metabench/PointNav-v0\"\] sets unknown"),
        ("[huge]\na = 1\n", r"'huge' is not a tier table; use \[smoke\], \[ci\] or \[standard\]"),
        ("a = 1\n", r"'a' is not a tier table"),
        ('[ci."metabench/PointNv-v0"]\na = 1\n', r"registered env id; did you mean 'metabench/PointNav-v0'"),
        ("[ci\na = 1\n", r"cannot read config file .*my_agent.toml"),
    ],
)
def test_a_bad_file_is_refused_naming_it(tmp_path: Path, toml: str, match: str) -> None:
    module = load_agent_module(str(write_agent(tmp_path, toml)))
    with pytest.raises(AgentError, match=match):
        build_config(module, "ci", env_id=POINT)


def test_an_agent_without_a_file_uses_its_module_tiers(tmp_path: Path) -> None:
    module = load_agent_module(str(write_agent(tmp_path, None)))
    assert load_hyperparams(module) == {}
    assert build_config(module, "ci", env_id=POINT).c == 3


def test_retuning_a_family_stales_only_that_familys_records(tmp_path: Path) -> None:
    """A record keeps its resolved config; provenance compares it with what the file gives now, so a
    changed ``[ci."env id"]`` table stales that family's records and leaves the others' current, and
    the file itself is not hashed with the agent's modules."""
    from metabench.harness import changed_imports, config_difference, current_config

    agent = write_agent(tmp_path, '[ci]\na = 2\n[ci."metabench/Bandit-v0"]\ng = 1\n')
    assert agent_imports_sha256(str(agent)) == {}
    point, bandit = (current_config(str(agent), "ci", env) for env in (POINT, BANDIT))
    assert point["a"] == 2 and point["c"] == 3 and bandit["g"] == 1
    (tmp_path / "hyperparams" / "my_agent.toml").write_text(
        '[ci]\na = 2\n[ci."metabench/Bandit-v0"]\ng = 5\n'
    )
    assert config_difference(point, str(agent), "ci", POINT) == []
    assert config_difference(bandit, str(agent), "ci", BANDIT) == ["g"]
    # records made while the file was hashed with the modules carry its key: it is left out
    assert changed_imports({"hyperparams/my_agent.toml": "0" * 64}, str(agent)) == []


@pytest.mark.parametrize("agent", REFERENCE_AGENTS)
def test_reference_agents_keep_their_settings_in_their_file(agent: str) -> None:
    """Each reference agent has its file; its tables name real tiers, registered families and config
    fields; the agent module itself keeps no TIERS/ENV_TIERS."""
    path = ROOT / "agents" / f"{agent}.py"
    assert (ROOT / "agents" / "hyperparams" / f"{agent}.toml").is_file()
    module = load_agent_module(str(path))
    assert not hasattr(module, "TIERS") and not hasattr(module, "ENV_TIERS")
    tables = load_hyperparams(module)
    assert set(tables) <= set(TIER_NAMES)
    for tier, values in tables.items():
        build_config(module, tier)
        for env_id in (k for k, v in values.items() if isinstance(v, dict)):
            assert env_id in metabench_ids(), env_id
            build_config(module, tier, env_id=env_id)
    assert not any(k.startswith("hyperparams/") for k in agent_imports_sha256(str(path)))


def test_the_files_ship_with_the_package() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "hyperparams/*.toml" in cfg["options.package_data"]["metabench.agents"]
