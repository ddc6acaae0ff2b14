"""Torch building blocks of the rlkit-based agents (PEARL's ``oyster`` and CEMRL's code both build on
rlkit): rlkit's MLP with its initialisation, and the product of diagonal Gaussians. Used by
``agents/pearl.py`` and ``agents/cemrl.py``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """ReLU MLP with rlkit's initialisation, drawn from ``generator``: hidden weights
    U(+-1/sqrt(size[0])) (rlkit's ``fanin_init`` reads the first axis of the (out, in) weight), hidden
    biases 0.1, last layer U(+-``init_w``). Works on any leading batch axes."""

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        generator: torch.Generator,
        init_w: float = 3e-3,
    ):
        super().__init__()
        sizes = [in_dim, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.last = nn.Linear(sizes[-1], out_dim)
        with torch.no_grad():
            for fc in self.hidden:
                bound = 1.0 / math.sqrt(fc.weight.shape[0])
                fc.weight.uniform_(-bound, bound, generator=generator)
                fc.bias.fill_(0.1)
            self.last.weight.uniform_(-init_w, init_w, generator=generator)
            self.last.bias.uniform_(-init_w, init_w, generator=generator)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for fc in self.hidden:
            x = F.relu(fc(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.trunk(x))


def product_of_gaussians(mu: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine factors ``N(mu_n, var_n)`` over the second-to-last axis, ``(..., N, d) -> (..., d)``:
    ``var = 1 / sum_n 1/var_n``, ``mu = var * sum_n mu_n / var_n``. Takes *variances*."""
    var = var.clamp(min=1e-7)
    post_var = 1.0 / (1.0 / var).sum(-2)
    post_mu = post_var * (mu / var).sum(-2)
    return post_mu, post_var
