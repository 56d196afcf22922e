"""The Multi-MNIST LeNet (Sener & Koltun 2018; Lin et al. 2019): a shared LeNet trunk and one
10-way head per digit, 36×36 canvas → logits (B, 2, 10); and N such networks stacked along a
leading dimension, evaluated in one vmapped pass → logits (N, B, 2, 10)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

NUM_TASKS, NUM_CLASSES = 2, 10


def _seeded(seed: int | None):
    """Build parameters from ``seed`` without touching the caller's random state (None: draw
    from torch's default generator, as any module does)."""
    if seed is None:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[]))  # restores the CPU state on exit
    torch.default_generator.manual_seed(seed)  # CPU only: modules initialise on the CPU
    return stack


def member_seed(seed: int, i: int) -> int:
    """The initialisation seed of member i of an ensemble seeded with ``seed``: independent
    streams per member (SeedSequence), not seed + i, which neighbouring ensembles would share."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint64)[0] >> 1)


class MultiLeNet(nn.Module):
    """Trunk conv 1→10 (9×9) → ReLU → max-pool 2 → conv 10→20 (5×5) → ReLU → max-pool 2 →
    linear 500→50 → ReLU, then two heads 50→10. Spatial sizes: 36 → 28 (conv 9) → 14 (pool)
    → 10 (conv 5) → 5 (pool), so the flattened trunk is 20·5·5 = 500. 31,910 parameters.

    forward(x (B, 1, 36, 36)) → logits (B, 2, 10): one tensor, task t's logits at [:, t], so
    the per-task cross-entropies are one call over the flattened (B·2, 10)."""

    def __init__(self, seed: int | None = None):
        super().__init__()
        with _seeded(seed):
            self.conv1 = nn.Conv2d(1, 10, kernel_size=9)
            self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
            self.fc = nn.Linear(20 * 5 * 5, 50)
            self.heads = nn.ModuleList(nn.Linear(50, NUM_CLASSES) for _ in range(NUM_TASKS))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The shared representation (B, 50)."""
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc(h.flatten(-3)))

    def forward(
        self, x: torch.Tensor, with_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, 2, 10); with ``with_features``, (features (B, 50), logits)."""
        z = self.features(x)
        logits = torch.stack([head(z) for head in self.heads], dim=-2)
        return (z, logits) if with_features else logits


def _meta_net() -> MultiLeNet:
    """A MultiLeNet without storage (and without random draws): a shape to fill."""
    with torch.device("meta"):
        return MultiLeNet()


class StackedMultiLeNet(nn.Module):
    """N independent MultiLeNets whose parameters are stacked along a leading dimension N: one
    nn.Parameter per MultiLeNet parameter, shape (N, ...), so one optimizer steps every member
    and member i's gradient is slice i. forward(x) evaluates all members in one vmapped pass.

    members: N (member i initialised as MultiLeNet(seed=member_seed(seed, i)); seed None draws
    it from torch's default generator, so seed_everything fixes it), or a sequence of
    MultiLeNets to stack (their values are copied)."""

    def __init__(self, members: int | Sequence[MultiLeNet], seed: int | None = None):
        super().__init__()
        if isinstance(members, int):
            if isinstance(members, bool) or members < 1:
                raise ValueError(f"members must be a positive integer. Found {members!r}")
            if seed is None:
                seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
            nets = [MultiLeNet(seed=member_seed(seed, i)) for i in range(members)]
        else:
            nets = list(members)
            if not nets or not all(isinstance(n, MultiLeNet) for n in nets):
                raise ValueError("members must be an integer or a non-empty list of MultiLeNets")
        params, buffers = stack_module_state(nets)
        if buffers:  # nothing to stack today; a batch-norm variant would need them carried
            raise ValueError(f"StackedMultiLeNet stacks parameters only. Found {list(buffers)}")
        self.num_members = len(nets)
        # parameter names may not contain dots: "heads.0.weight" is held as "heads__0__weight"
        self._names = list(params)
        self.stacked = nn.ParameterDict(
            {n.replace(".", "__"): nn.Parameter(p.detach().clone()) for n, p in params.items()}
        )
        # the architecture without storage: functional_call supplies every parameter
        object.__setattr__(self, "_template", _meta_net())

    def __len__(self) -> int:
        return self.num_members

    def stacked_parameters(self) -> dict[str, nn.Parameter]:
        """{MultiLeNet parameter name: stacked parameter (N, ...)}."""
        return {n: self.stacked[n.replace(".", "__")] for n in self._names}

    def forward(
        self, x: torch.Tensor, with_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, 36, 36), shared by every member, or (N, B, 1, 36, 36), one batch per
        member → logits (N, B, 2, 10); with ``with_features``, (the trunks' features
        (N, B, 50), logits)."""

        def one(params, inputs):
            return functional_call(
                self._template, params, (inputs,), {"with_features": with_features}
            )

        in_x = 0 if x.dim() == 5 else None
        return torch.vmap(one, in_dims=(0, in_x))(self.stacked_parameters(), x)

    def member(self, i: int) -> MultiLeNet:
        """Member i as a plain MultiLeNet (a copy, on the stack's device and dtype)."""
        if not -self.num_members <= i < self.num_members:
            raise IndexError(f"member {i} of a stack of {self.num_members}")
        net = _meta_net()
        state = {n: p[i].detach().clone() for n, p in self.stacked_parameters().items()}
        net.load_state_dict(state, assign=True)
        return net
