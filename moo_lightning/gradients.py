"""Per-objective gradients, their Gram matrix, and writing a combined direction into ``.grad``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist


def objective_grads(
    losses: torch.Tensor, params: Sequence[torch.Tensor], keep_graph: bool = False
) -> list[list[torch.Tensor]]:
    """Gradients of each entry of ``losses`` (m,) w.r.t. ``params``: m lists, one tensor per
    parameter (zeros where an objective does not reach a parameter, marked as such: a parameter
    no objective reaches keeps ``.grad`` None, as after an ordinary backward, see
    :func:`unreached`). The graph is freed after the last objective unless ``keep_graph``
    (other losses still need it)."""
    grads = []
    m = losses.numel()
    spans: dict[int, list[tuple[int, int]]] = {}
    for i in range(m):
        g = torch.autograd.grad(
            losses[i], params, retain_graph=keep_graph or i < m - 1, allow_unused=True
        )
        grads.append([_zeros(p) if gi is None else _owned(gi, spans) for gi, p in zip(g, params)])
    return grads


def _zeros(p: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(p)
    z._moo_unreached = True  # an objective that does not reach p: no gradient, not a zero one
    return z


def unreached(g: torch.Tensor) -> bool:
    """Whether ``g`` (from :func:`objective_grads`) stands for no gradient at all: the
    objective does not reach the parameter (on any DDP rank, after :func:`all_reduce_grads`)."""
    return bool(getattr(g, "_moo_unreached", False))


def _owned(g: torch.Tensor, spans: dict[int, list[tuple[int, int]]]) -> torch.Tensor:
    """``g``, or a copy of it where autograd handed out memory that another gradient of this
    step also uses (one buffer for both inputs of an addition) or that repeats its own entries
    (an expanded, stride-0 gradient): the direction is built in place in these buffers, and
    DDP averages into them, so each must be a tensor's own. ``spans``: the byte ranges of the
    storages already handed out this step."""
    if any(st == 0 and n > 1 for st, n in zip(g.stride(), g.shape)):
        return g.contiguous()  # a fresh buffer: nothing else refers to it
    ptr = g.untyped_storage().data_ptr()
    start = g.storage_offset() * g.element_size()
    end = start + (1 + sum((n - 1) * st for n, st in zip(g.shape, g.stride()))) * g.element_size()
    taken = spans.setdefault(ptr, [])
    if any(start < b and a < end for a, b in taken):
        return g.clone()
    taken.append((start, end))
    return g


def leaves_behind(tensor: torch.Tensor) -> set[int]:
    """The ids of the leaf tensors (parameters) ``tensor`` was computed from: the AccumulateGrad
    nodes its autograd graph reaches. A walk over the graph; nothing is differentiated."""
    if tensor.grad_fn is None:
        return {id(tensor)} if tensor.requires_grad else set()
    found: set[int] = set()
    seen = set()
    todo = [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)
        if leaf is not None:
            found.add(id(leaf))
        todo.extend(nxt for nxt, _ in node.next_functions)
    return found


def world_size() -> int:
    """The number of DDP processes (1 without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


def all_reduce_grads(grads: list[list[torch.Tensor]]) -> None:
    """Average per-objective gradients over DDP ranks in place (autograd.grad bypasses DDP's
    reducer), so every rank builds the same Gram matrix and solves the same problem."""
    world = world_size()
    if world == 1:
        return
    for per_objective in grads:
        flat = torch.cat([g.reshape(-1) for g in per_objective])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in per_objective:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n
    # a parameter some rank's objective reaches has a gradient on every rank
    reached = torch.tensor(
        [[0.0 if unreached(g) else 1.0 for g in per] for per in grads], device=grads[0][0].device
    )
    dist.all_reduce(reached)
    for per, flags in zip(grads, reached.tolist()):
        for g, flag in zip(per, flags):
            if flag > 0 and unreached(g):
                g._moo_unreached = False


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over DDP ranks (a detached copy); ``x`` itself without DDP."""
    world = world_size()
    if world == 1:
        return x
    buf = x.detach().clone()
    dist.all_reduce(buf)
    return buf / world


def all_reduce_gram(K: torch.Tensor) -> None:
    """For per-rank features (representation scope): the global batch's Gram is Σ_r K_r / R²
    (each rank's loss is a 1/R share of the global mean). In place; no-op without DDP."""
    world = world_size()
    if world == 1:
        return
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    buf = K.to(device=device, dtype=torch.float64)
    dist.all_reduce(buf)
    K.copy_(buf.cpu() / world**2)


def gram_matrix(grads: list[list[torch.Tensor]]) -> torch.Tensor:
    """K_ij = <∇ℓ_i, ∇ℓ_j> over all parameters, in float64. Returns (m, m) on the CPU.
    One (m × chunk) float64 matmul per slice of each parameter: exact to round-off, about twice
    as fast as pairwise dot products, and never more than m × ``chunk`` float64 values of
    scratch memory (a whole embedding matrix in float64 would cost more than its gradients)."""
    m = len(grads)
    K = torch.zeros(m, m, dtype=torch.float64, device=grads[0][0].device)
    chunk = 1 << 20
    for k in range(len(grads[0])):
        flat = [g[k].reshape(-1) for g in grads]
        for start in range(0, flat[0].numel(), chunk):
            Gp = torch.stack([f[start : start + chunk] for f in flat]).double()
            K += Gp @ Gp.T
    return K.cpu()


def write_direction(
    grads: list[list[torch.Tensor]],
    weights: torch.Tensor,
    params: Sequence[torch.Tensor],
    weighted: Sequence[bool] | None = None,
) -> None:
    """Set p.grad = Σ_i w_i ∇_p ℓ_i for every parameter (overwrites, does not accumulate).
    A parameter with ``weighted[k]`` false (a task's own head) takes Σ_i ∇_p ℓ_i, unweighted:
    its own loss's gradient. The first objective's gradient buffers are reused for the result
    (no extra copy)."""
    w = weights.detach().cpu().tolist()
    for k, p in enumerate(params):
        if all(unreached(g[k]) for g in grads):
            p.grad = None  # no objective reaches p: the optimizer leaves it (and its moments) be
            continue
        if weighted is not None and not weighted[k]:
            p.grad = sum(g[k] for g in grads).to(p.dtype)
            continue
        d = grads[0][k].mul_(w[0])
        for i in range(1, len(grads)):
            d.add_(grads[i][k], alpha=w[i])
        p.grad = d.to(p.dtype)


# --- ensembles whose members are stacked along dim 0 of every parameter ---------------------


def member_gram_matrices(grads: list[list[torch.Tensor]]) -> torch.Tensor:
    """Per-member Gram matrices (N, m, m) in float64 on the CPU, from per-objective gradients of
    stacked parameters (every tensor (N, ...), member n's gradient in slice n)."""
    m, n = len(grads), grads[0][0].shape[0]
    K = torch.zeros(n, m, m, dtype=torch.float64, device=grads[0][0].device)
    for k in range(len(grads[0])):
        G = torch.stack([g[k].reshape(n, -1) for g in grads], dim=1).double()  # (N, m, P)
        K += G @ G.transpose(1, 2)
    return K.cpu()


def write_member_directions(
    grads: list[list[torch.Tensor]],
    weights: torch.Tensor,
    params: Sequence[torch.Tensor],
    weighted: Sequence[bool] | None = None,
) -> None:
    """Set p.grad[n] = Σ_i w_ni ∇_p ℓ_ni for every stacked parameter p (N, ...) and member n:
    each member moves along its own combination of its own gradients. ``weighted`` as in
    :func:`write_direction` (a task's own parameters take Σ_i ∇_p ℓ_ni, unweighted)."""
    for k, p in enumerate(params):
        if all(unreached(g[k]) for g in grads):
            p.grad = None  # no objective reaches p
            continue
        if weighted is not None and not weighted[k]:
            p.grad = sum(g[k] for g in grads).to(p.dtype)
            continue
        shape = (p.shape[0],) + (1,) * (p.dim() - 1)
        w = weights.to(device=p.device, dtype=grads[0][k].dtype)
        d = grads[0][k].mul_(w[:, 0].view(shape))
        for i in range(1, len(grads)):
            d.add_(grads[i][k] * w[:, i].view(shape))
        p.grad = d.to(p.dtype)
