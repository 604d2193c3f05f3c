"""Big batches in small memory: one optimiser step's gradient, computed a micro-batch at a time.

Every trainer of the course (``policy_gradient.train``, ``dpo.train_dpo``, ``reward_model.train_reward_model``)
computes one number per row of a batch, or one row of numbers (a response's log-probability, its per-token
log-probs, a reward), then a loss from all of them together. The memory goes into the forward pass: the
activations and the full-vocabulary logits of every row at once. With a ``micro_batch_size`` the same
gradient is computed with only that many rows in memory at a time, in three steps:

1. a forward pass over each micro-batch *without* gradients gives every row's outputs (cheap to keep);
2. the loss is computed from all outputs at once, as without micro-batches, and backpropagated to the
   outputs only: one gradient per output number;
3. each micro-batch is run forward again *with* gradients and backpropagated with its slice of those
   gradients; the parameter gradients add up to the full batch's.

This is "gradient caching" (Gao et al. 2021, *Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup*, https://arxiv.org/abs/2101.06983). Unlike plain gradient accumulation (TRL's
``gradient_accumulation_steps``) it is exact for any loss, also one that couples rows (a DPO pair's two
responses, an RLOO group's baseline, a token-mean over the whole batch), at the price of one more forward
pass without gradients. The random state is restored before each repeated forward, so dropout draws the
same masks twice. Results equal the one-big-batch ones up to float rounding (tests/test_accumulation.py).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Outputs = torch.Tensor | tuple[torch.Tensor, ...]


def _as_tuple(out: Outputs) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def _rng_state() -> tuple:
    return (torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def _set_rng_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def chunks(n_rows: int, micro_batch_size: int | None) -> list[torch.Tensor]:
    """Row indices 0..n_rows-1 in runs of ``micro_batch_size`` (one run of all rows when None)."""
    rows = torch.arange(n_rows)
    if micro_batch_size is None or micro_batch_size >= n_rows:
        return [rows]
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be >= 1 or None, got {micro_batch_size}")
    return list(rows.split(micro_batch_size))


@torch.no_grad()
def forward_in_micro_batches(forward: Callable[[torch.Tensor], Outputs], n_rows: int,
                             micro_batch_size: int | None) -> Outputs:
    """``forward(rows)`` for all rows without gradients, ``micro_batch_size`` rows at a time, outputs joined
    along dim 0 (``forward`` returns a tensor, or a tuple of tensors, whose first dim is ``len(rows)``)."""
    parts = [_as_tuple(forward(idx)) for idx in chunks(n_rows, micro_batch_size)]
    joined = tuple(torch.cat(column) if len(parts) > 1 else column[0] for column in zip(*parts))
    return joined if len(joined) > 1 else joined[0]


def backward_in_micro_batches(forward: Callable[[torch.Tensor], Outputs], n_rows: int,
                              loss_fn: Callable[[Outputs], tuple[torch.Tensor, Any]],
                              micro_batch_size: int | None,
                              check: Callable[[torch.Tensor], None] | None = None
                              ) -> tuple[torch.Tensor, Outputs, Any]:
    """Backpropagate ``loss_fn(forward(all rows))`` with at most ``micro_batch_size`` rows in memory at once.

    Args:
        forward: ``forward(rows) -> outputs`` for a 1-d tensor of row indices: a tensor (or tuple of tensors)
            with first dim ``len(rows)``, computed with gradients (e.g. per-token log-probs, (n, T)).
        n_rows: rows in the batch.
        loss_fn: ``loss_fn(outputs of all rows) -> (loss, extra)``: the batch's scalar loss and anything else
            to hand back (e.g. statistics).
        micro_batch_size: rows per forward pass; None (or at least ``n_rows``): one pass over the whole batch
            and an ordinary ``loss.backward()``, exactly as without this function.
        check: called with the loss before anything is backpropagated (e.g. to stop on a NaN).
    Returns ``(loss, outputs, extra)``, the loss and outputs detached. Gradients are *added* to the
    parameters' ``.grad`` (zero them before, clip and step after, as for ``loss.backward()``).
    """
    pieces = chunks(n_rows, micro_batch_size)
    if len(pieces) == 1:
        outputs = forward(pieces[0])
        loss, extra = loss_fn(outputs)
        if check is not None:
            check(loss)
        loss.backward()
        return loss.detach(), tuple(o.detach() for o in outputs) if isinstance(outputs, tuple) else outputs.detach(), extra
    states, parts = [], []
    with torch.no_grad():
        for idx in pieces:                               # 1. outputs of every row, no activations kept
            states.append(_rng_state())
            parts.append(_as_tuple(forward(idx)))
    leaves = tuple(torch.cat(column).requires_grad_(column[0].is_floating_point()) for column in zip(*parts))
    outputs = leaves if len(leaves) > 1 else leaves[0]
    loss, extra = loss_fn(outputs)                       # 2. the loss of the whole batch, d loss / d outputs
    if check is not None:
        check(loss)
    grads = torch.autograd.grad(loss, [t for t in leaves if t.requires_grad], allow_unused=True)
    grads = iter(grads)
    output_grads = [next(grads) if t.requires_grad else None for t in leaves]
    start = 0
    after = _rng_state()
    for idx, state in zip(pieces, states):               # 3. each micro-batch again, with gradients
        stop = start + len(idx)
        _set_rng_state(state)
        again = _as_tuple(forward(idx))
        pairs = [(o, g[start:stop]) for o, g in zip(again, output_grads) if g is not None and o.requires_grad]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        start = stop
    _set_rng_state(after)
    detached = tuple(t.detach() for t in leaves)
    return loss.detach(), detached if len(detached) > 1 else detached[0], extra
