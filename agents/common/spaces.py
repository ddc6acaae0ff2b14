"""Gymnasium spaces as JSON, so that a saved agent records its spaces without pickle."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces


def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    """A JSON form of the spaces metabench families use: Box, Discrete and MultiDiscrete."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "shape": list(space.shape),
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    raise TypeError(f"cannot save a {type(space).__name__} space; supported: Box, Discrete, MultiDiscrete")


def space_from_dict(data: dict[str, Any]) -> spaces.Space:
    """The inverse of :func:`space_to_dict`."""
    if data["type"] == "Box":
        dtype = np.dtype(data["dtype"])
        low = np.asarray(data["low"], dtype=dtype).reshape(data["shape"])
        high = np.asarray(data["high"], dtype=dtype).reshape(data["shape"])
        return spaces.Box(low, high, dtype=dtype)
    if data["type"] == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    if data["type"] == "MultiDiscrete":
        return spaces.MultiDiscrete(data["nvec"])
    raise ValueError(f"unknown space type {data['type']!r}; valid: Box, Discrete, MultiDiscrete")
