"""Micro-batches give the one-big-batch gradient (rlhf_lab/accumulation.py), in every trainer of the course."""
from __future__ import annotations

import pytest
import torch

from rlhf_lab import accumulation, models, world
from rlhf_lab import policy_gradient as pg

pytestmark = pytest.mark.usefixtures("one_thread")


def _coupled_loss(outputs):
    """A loss that couples every row (a softmax over the batch), so a per-row split would get it wrong."""
    logits, extra = outputs
    return -torch.log_softmax(logits.sum(1), dim=0)[0] + (extra ** 2).mean(), {"rows": len(logits)}


@pytest.mark.parametrize("micro", [None, 1, 3, 7, 100])
def test_gradient_equals_the_full_batch_gradient(micro):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))
    x = torch.randn(10, 5)

    def forward(idx):
        h = net(x[idx])
        return h, h[:, :2] * 3

    loss_full, _ = _coupled_loss(forward(torch.arange(10)))
    full = torch.autograd.grad(loss_full, list(net.parameters()))
    net.zero_grad()
    loss, outputs, extra = accumulation.backward_in_micro_batches(forward, 10, _coupled_loss, micro)
    assert extra == {"rows": 10} and outputs[0].shape == (10, 4) and not outputs[0].requires_grad
    torch.testing.assert_close(loss, loss_full.detach())
    for p, g in zip(net.parameters(), full):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-5)


def test_dropout_draws_the_same_masks_in_the_repeated_forward():
    """The random state is restored before each micro-batch's second forward: the gradient is the exact
    gradient of the loss at the outputs of the first pass (here: the same as one graph over the chunks)."""
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1)).train()
    x = torch.randn(9, 5)
    forward = lambda idx: net(x[idx]).squeeze(1)          # noqa: E731
    loss_fn = lambda out: (((out - 1) ** 2).mean(), None)  # noqa: E731
    torch.manual_seed(1)
    expected = loss_fn(torch.cat([forward(idx) for idx in accumulation.chunks(9, 4)]))[0]
    grads = torch.autograd.grad(expected, list(net.parameters()))
    torch.manual_seed(1)
    net.zero_grad()
    loss, _, _ = accumulation.backward_in_micro_batches(forward, 9, loss_fn, 4)
    torch.testing.assert_close(loss, expected.detach())
    for p, g in zip(net.parameters(), grads):
        torch.testing.assert_close(p.grad, g)


def test_check_runs_before_any_gradient_and_bad_sizes_are_refused():
    net = torch.nn.Linear(2, 1)
    x = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])

    def check(loss):
        if not torch.isfinite(loss):
            raise FloatingPointError("nan")

    with pytest.raises(FloatingPointError):
        accumulation.backward_in_micro_batches(lambda idx: net(x[idx]), 2, lambda o: (o.sum(), None), 1, check=check)
    assert net.weight.grad is None
    with pytest.raises(ValueError, match="micro_batch_size"):
        accumulation.chunks(4, 0)
    with pytest.raises(ValueError, match="multiple of samples_per_prompt"):
        pg.PGConfig(micro_batch_size=6, samples_per_prompt=4)
    pg.PGConfig(algorithm="ppo", micro_batch_size=3)   # PPO's minibatches are shuffled: any size


# ----------------------------------------------------------------------------- the trainers
@pytest.fixture(scope="module")
def tiny():
    policy, tokenizer = models.load_policy()
    train, _ = world.split_prompts(world.load_prompts())
    return policy, tokenizer, [p.text for p in train]


def _max_rows_per_forward(model):
    """A hook that records the largest batch a forward pass of ``model`` with gradients saw (the logits' first
    dim): the passes whose activations are kept for the backward pass (sampling runs without gradients)."""
    seen = [0]

    def hook(module, args, kwargs, output):
        if torch.is_grad_enabled():
            seen[0] = max(seen[0], output.logits.shape[0])

    model.register_forward_hook(hook, with_kwargs=True)
    return seen


_APPLY = pg.apply_gradients


def _gold(prompts, responses):
    return torch.tensor([world.gold_reward(p, r) for p, r in zip(prompts, responses)])


def _grads_at_each_update(monkeypatch):
    """Record the parameter gradients (before clipping) at each of ``pg.train``'s updates, one list per update."""
    updates: list[list[torch.Tensor]] = []

    def recording(optimizer, params, max_grad_norm):
        updates.append([p.grad.clone() for p in params if p.grad is not None])
        _APPLY(optimizer, params, max_grad_norm)

    monkeypatch.setattr(pg, "apply_gradients", recording)
    return updates


@pytest.mark.parametrize("algorithm,micro", [("rloo", 4), ("grpo", 8), ("reinforce", 4), ("ppo", 3)])
def test_pg_train_with_micro_batches_takes_the_same_step(tiny, algorithm, micro, monkeypatch):
    """Two steps with and without micro-batches: the same samples, losses and gradients (before clipping) at
    every update, and no forward pass with gradients over more than ``micro`` rows."""
    policy, tokenizer, prompts = tiny
    results = []
    for micro_batch_size in (None, micro):
        grads = _grads_at_each_update(monkeypatch)
        model, ref = models.trainable_copy(policy), models.frozen_copy(policy)
        seen = _max_rows_per_forward(model)
        config = pg.PGConfig(algorithm=algorithm, steps=2, prompts_per_step=4, samples_per_prompt=4,
                             max_new_tokens=24, micro_batch_size=micro_batch_size)
        log = pg.train(model, ref, tokenizer, _gold, prompts, config, progress=False)
        results.append((log, grads, seen[0]))
    (log_big, grads_big, rows_big), (log_small, grads_small, rows_small) = results
    assert rows_big == (8 if algorithm == "ppo" else 16) and rows_small <= micro
    for a, b in zip(log_big, log_small):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["proxy_reward"] == pytest.approx(b["proxy_reward"], abs=1e-6)   # same samples at step 2 too
    _assert_same_gradients(grads_big, grads_small)


_CLIP = torch.nn.utils.clip_grad_norm_


def _grads_at_each_clip(monkeypatch):
    """Record every parameter gradient when the trainer clips it (before clipping), one list per step."""
    clip = _CLIP
    steps: list[list[torch.Tensor]] = []

    def recording(params, *args, **kwargs):
        params = list(params)
        steps.append([p.grad.clone() for p in params if p.grad is not None])
        return clip(params, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    return steps


def _assert_same_gradients(big, small, min_updates: int = 2):
    """The same gradients (atol 1e-5 of the largest) at each of at least ``min_updates`` updates."""
    assert len(big) == len(small) >= min_updates
    for update_big, update_small in zip(big, small):
        scale = max(g.abs().max().item() for g in update_big)
        assert scale > 0
        for g, h in zip(update_big, update_small):
            torch.testing.assert_close(h, g, atol=1e-5 * scale, rtol=1e-4)


def test_train_dpo_with_micro_batches_takes_the_same_steps(tiny, monkeypatch):
    from rlhf_lab import dpo

    policy, tokenizer, _ = tiny
    records = world.simulate_preferences(24, seed=0)
    runs = []
    for micro in (None, 5):
        grads = _grads_at_each_clip(monkeypatch)
        model = models.trainable_copy(policy)
        seen = _max_rows_per_forward(model)
        history = dpo.train_dpo(model, models.frozen_copy(policy), tokenizer, records,
                                dpo.DPOConfig(batch_size=8, max_steps=2, micro_batch_size=micro), progress=False)
        runs.append((history.loss, grads, seen[0]))
    (loss_a, grads_a, rows_a), (loss_b, grads_b, rows_b) = runs
    assert loss_a == pytest.approx(loss_b, abs=1e-5) and rows_a > 5 >= rows_b
    _assert_same_gradients(grads_a, grads_b)


def test_train_reward_model_with_micro_batches_takes_the_same_steps(monkeypatch):
    from rlhf_lab import reward_model as rm

    records = world.simulate_preferences(24, seed=0)
    runs = []
    for micro in (None, 5):
        grads = _grads_at_each_clip(monkeypatch)
        torch.manual_seed(0)
        net, rtok = rm.load_reward_model(models.DEFAULT_POLICY)
        history = rm.train_reward_model(net, rtok, records, progress=False,
                                        config=rm.RewardTrainConfig(batch_size=8, micro_batch_size=micro))
        runs.append((history.loss, grads))
    (loss_a, grads_a), (loss_b, grads_b) = runs
    assert loss_a == pytest.approx(loss_b, abs=1e-5) and len(loss_a) >= 3
    _assert_same_gradients(grads_a, grads_b)


def _recomputed_in_backward(model, monkeypatch):
    """Count the first attention layer's calls made *during* a backward pass: a checkpointed layer is run
    again there (to rebuild the activations it did not keep); an ordinary one never is."""
    calls, inside = [0], [False]
    backward = torch.Tensor.backward

    def tracked(self, *args, **kwargs):
        inside[0] = True
        try:
            return backward(self, *args, **kwargs)
        finally:
            inside[0] = False

    monkeypatch.setattr(torch.Tensor, "backward", tracked)
    model.transformer.h[0].attn.register_forward_hook(lambda module, args, output: calls.__setitem__(
        0, calls[0] + inside[0]))
    return calls


@pytest.mark.parametrize("algorithm", ["rloo", "ppo"])
def test_gradient_checkpointing_really_runs_and_changes_no_number(tiny, algorithm, monkeypatch):
    policy, tokenizer, prompts = tiny
    runs = []
    for checkpointing in (False, True):
        grads = _grads_at_each_update(monkeypatch)
        model = models.trainable_copy(policy)
        if checkpointing:
            models.enable_checkpointing(model)
            assert models.checkpointing_on(model)
        calls = _recomputed_in_backward(model, monkeypatch)
        config = pg.PGConfig(algorithm=algorithm, steps=1, prompts_per_step=2, samples_per_prompt=4,
                             max_new_tokens=16, minibatches=1, ppo_epochs=1)
        log = pg.train(model, models.frozen_copy(policy), tokenizer, _gold, prompts, config, progress=False)
        assert not model.training                         # back in eval mode after the update
        runs.append((calls[0], grads, log[0]["loss"]))
    (calls_plain, grads_plain, loss_plain), (calls_ckpt, grads_ckpt, loss_ckpt) = runs
    assert calls_plain == 0 and calls_ckpt >= 1
    assert loss_ckpt == pytest.approx(loss_plain, abs=1e-6)
    _assert_same_gradients(grads_plain, grads_ckpt, min_updates=1)


def test_gradient_checkpointing_runs_in_dpo(tiny, monkeypatch):
    from rlhf_lab import dpo

    policy, tokenizer, _ = tiny
    records = world.simulate_preferences(8, seed=1)
    counts = []
    for checkpointing in (False, True):
        model = models.trainable_copy(policy)
        if checkpointing:
            models.enable_checkpointing(model)
        calls = _recomputed_in_backward(model, monkeypatch)
        dpo.train_dpo(model, models.frozen_copy(policy), tokenizer, records,
                      dpo.DPOConfig(batch_size=8, max_steps=1), progress=False)
        counts.append(calls[0])
    assert counts[0] == 0 and counts[1] >= 1
