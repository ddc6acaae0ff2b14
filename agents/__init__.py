"""Reference meta-RL agents, one module each; installed as ``metabench.agents``."""
