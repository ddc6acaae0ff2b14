"""Task families, one module each; installed as ``metabench.envs``. Ids are listed in
``metabench/registration.py``."""
