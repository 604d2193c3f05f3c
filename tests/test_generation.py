"""Tests for rlhf_lab.generation: masks, EOS handling, log-prob correctness, reproducibility.

A randomly initialised tiny GPT-2 is enough here; a forward hook adds a fixed bonus to the EOS
logit so that responses end at different lengths (the hook changes the model itself, so sampling
and recomputation see the same distribution).
"""
from __future__ import annotations

import pytest
import torch

from rlhf_lab import world
from rlhf_lab.generation import (Batch, SampleConfig, categorical, encode, encode_prompts, position_ids_from_mask,
                                 response_logprobs, sample, sequence_logprob)
from rlhf_lab.models import TinyGPTConfig, build_model, build_tokenizer, format_prompt, format_response
from rlhf_lab.pretrain import corpus_texts

TINY = TinyGPTConfig(vocab_size=400, n_positions=96, n_embd=32, n_layer=2, n_head=2)
PROMPTS = ["Hi", "What do you think about my plan to start a vegetable garden?",
           "Is it hard to learn Python?", "Please give me some advice on my monthly budget. I need it soon."]
EOS_BONUS = 4.5  # P(EOS) of roughly 1/4 per step on a random model with 400 tokens


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.fixture(scope="module")
def policy():
    prompts = world.load_prompts()[::13]
    pairs = [(p.text, r) for p, r in world.response_corpus(prompts, per_prompt=6, seed=0)]
    tokenizer = build_tokenizer(corpus_texts(pairs), TINY.vocab_size)
    torch.manual_seed(0)
    model = build_model(TINY, tokenizer).eval()
    eos = tokenizer.eos_token_id

    def eos_bonus(module, inputs, logits):
        logits = logits.clone()
        logits[..., eos] += EOS_BONUS
        return logits
    model.lm_head.register_forward_hook(eos_bonus)
    return model, tokenizer


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sample_shapes_masks_and_eos(policy):
    model, tok = policy
    config = SampleConfig(max_new_tokens=12)
    out = sample(model, tok, PROMPTS * 2, config, generator=_gen(0))
    B, P = out.prompt_ids.shape
    T = out.response_ids.shape[1]
    assert B == 8 and T <= 12 and out.response_mask.shape == out.logprobs.shape == (B, T)
    assert len(out.texts) == B
    # prompts: left padded, each ends at the last column, same tokens as encode_prompts
    ids, mask = encode_prompts(tok, PROMPTS * 2)
    assert torch.equal(out.prompt_ids, ids) and torch.equal(out.prompt_mask, mask)
    assert (mask[:, -1] == 1).all() and (mask.sum(1) < P).any()
    lengths = out.response_mask.sum(1)
    ended = []
    for row in range(B):
        n = int(lengths[row])
        assert (out.response_mask[row, :n] == 1).all() and (out.response_mask[row, n:] == 0).all()
        assert (out.response_ids[row, n:] == tok.pad_token_id).all()
        assert (out.logprobs[row, n:] == 0).all() and (out.logprobs[row, :n] < 0).all()
        eos_at = (out.response_ids[row, :n] == tok.eos_token_id).nonzero().flatten().tolist()
        assert eos_at in ([], [n - 1])  # at most one EOS, and it is the last real token
        assert eos_at or n == config.max_new_tokens  # no EOS only when the length cap was hit
        ended.append(bool(eos_at))
    assert any(ended) and len(set(lengths.tolist())) > 1  # rows stop at different times
    # texts are the decoded real tokens without EOS
    row = int(torch.tensor(ended).nonzero()[0])
    real = out.response_ids[row, :int(lengths[row]) - 1]
    assert out.texts[row] == tok.decode(real, skip_special_tokens=True).strip()


def test_sample_logprobs_match_recomputed_with_left_padding(policy):
    model, tok = policy
    out = sample(model, tok, PROMPTS, SampleConfig(max_new_tokens=16), generator=_gen(1))
    with torch.no_grad():
        recomputed = response_logprobs(model, out.prompt_ids, out.prompt_mask, out.response_ids, out.response_mask)
    torch.testing.assert_close(out.logprobs, recomputed, atol=1e-4, rtol=0)
    seq = sequence_logprob(model, out.prompt_ids, out.prompt_mask, out.response_ids, out.response_mask)
    torch.testing.assert_close(seq, recomputed.sum(1), atol=1e-5, rtol=0)


def test_logprobs_are_of_the_unmodified_distribution(policy):
    """Temperature and top-k change what is drawn, never the reported log-probs."""
    model, tok = policy
    out = sample(model, tok, PROMPTS, SampleConfig(max_new_tokens=10, temperature=0.7, top_k=5), generator=_gen(2))
    with torch.no_grad():
        recomputed = response_logprobs(model, out.prompt_ids, out.prompt_mask, out.response_ids, out.response_mask)
    torch.testing.assert_close(out.logprobs, recomputed, atol=1e-4, rtol=0)


def test_response_logprobs_ignore_padding(policy):
    """A row in a padded batch gets the same log-probs as the same row alone (no padding at all)."""
    model, tok = policy
    responses = ["Try it.", "Start by setting one small goal for this week. Good luck!", "No.", "Hmm"]
    batch = encode(tok, PROMPTS, responses)
    with torch.no_grad():
        batched = response_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
        for i, (prompt, response) in enumerate(zip(PROMPTS, responses)):
            ids = tok(format_prompt(prompt) + format_response(response))["input_ids"] + [tok.eos_token_id]
            n_prompt = int(batch.prompt_mask[i].sum())
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
            by_hand = logp[torch.arange(n_prompt - 1, len(ids) - 1), torch.tensor(ids[n_prompt:])]
            n = int(batch.response_mask[i].sum())
            torch.testing.assert_close(batched[i, :n], by_hand, atol=1e-5, rtol=0)
            assert (batched[i, n:] == 0).all()


def test_encode(policy):
    _, tok = policy
    batch = encode(tok, ["Hi", "Is it hard to learn Python?"], ["Sure, try it.", "Yes."])
    assert batch.prompt_mask[0, 0] == 0 and batch.prompt_ids[0, 0] == tok.pad_token_id  # left padding
    assert (batch.prompt_mask[:, -1] == 1).all()
    lengths = batch.response_mask.sum(1)
    for row in range(2):
        assert batch.response_ids[row, lengths[row] - 1] == tok.eos_token_id
    assert batch.response_mask[1, -1] == 0  # "Yes." is shorter: right padding
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        encode(tok, ["a", "b"], ["c"])
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.response_ids, batch.response_ids) and len(moved) == 2


def test_position_ids_from_mask():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 3]]


def test_response_logprobs_have_gradients(policy):
    model, tok = policy
    batch = encode(tok, PROMPTS[:2], ["Try it.", "Good luck!"])
    logp = sequence_logprob(model, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    assert logp.shape == (2,) and logp.requires_grad
    logp.sum().backward()
    assert model.transformer.h[0].attn.c_attn.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_sampling_is_reproducible(policy):
    model, tok = policy
    a = sample(model, tok, PROMPTS, SampleConfig(max_new_tokens=12), generator=_gen(3))
    b = sample(model, tok, PROMPTS, SampleConfig(max_new_tokens=12), generator=_gen(3))
    c = sample(model, tok, PROMPTS, SampleConfig(max_new_tokens=12), generator=_gen(4))
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    assert torch.equal(a.logprobs, b.logprobs)
    assert a.texts != c.texts


def test_categorical_draws_each_index_with_its_probability():
    # rows that need not sum to 1, zeros in the middle and at both ends
    probs = torch.tensor([[0.0, 0.2, 0.0, 0.5, 0.3, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0, 6.0]])
    n = 40_000
    draws = categorical(probs.repeat_interleave(n, 0), _gen(0)).view(2, n)
    freq = torch.stack([torch.bincount(row, minlength=6) for row in draws]).float() / n
    expected = probs / probs.sum(1, keepdim=True)
    assert torch.all(freq[expected == 0] == 0)                    # an index of probability 0 is never drawn
    assert torch.allclose(freq, expected, atol=4 * (0.25 / n) ** 0.5), freq   # within 4 standard errors
    assert torch.equal(categorical(probs, _gen(1)), categorical(probs, _gen(1)))   # the generator decides
    one_hot = torch.zeros(3, 1024)
    one_hot[:, [0, 500, 1023]] = torch.eye(3)
    assert categorical(one_hot, _gen(2)).tolist() == [0, 500, 1023]    # a sure token, wherever it sits


def test_greedy_top_k_1_and_tiny_top_p_agree(policy):
    model, tok = policy
    greedy = sample(model, tok, PROMPTS, SampleConfig(max_new_tokens=8, temperature=0.0))
    top1 = sample(model, tok, PROMPTS, SampleConfig(max_new_tokens=8, top_k=1), generator=_gen(5))
    nucleus = sample(model, tok, PROMPTS, SampleConfig(max_new_tokens=8, top_p=1e-6), generator=_gen(6))
    assert torch.equal(greedy.response_ids, top1.response_ids)
    assert torch.equal(greedy.response_ids, nucleus.response_ids)


def test_too_long_is_a_clear_error(policy):
    model, tok = policy
    with pytest.raises(ValueError, match="positions"):
        sample(model, tok, PROMPTS, SampleConfig(max_new_tokens=TINY.n_positions))


def test_prefix_sharing_gives_the_same_logprobs_and_gradients(policy):
    """response_logprobs(group=k) runs each of the k identical prompts once; numbers and gradients unchanged."""
    model, tok = policy
    k = 3
    grouped = [p for p in PROMPTS for _ in range(k)]
    out = sample(model, tok, grouped, SampleConfig(max_new_tokens=10), generator=_gen(4))
    args = (out.prompt_ids, out.prompt_mask, out.response_ids, out.response_mask)
    grads = []
    for group in (1, k):
        model.zero_grad()
        logprobs = response_logprobs(model, *args, group=group)
        logprobs.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        if group == 1:
            plain = logprobs.detach()
    assert torch.allclose(logprobs.detach(), plain, atol=1e-5)
    assert torch.allclose(plain, out.logprobs, atol=1e-5)          # and the sampling log-probs
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="runs of 3 identical prompts"):
        response_logprobs(model, *(t[[0, 1, 3, 2, 4, 5]] for t in args[:2]),
                          *(t[:6] for t in args[2:]), group=3)


@pytest.mark.parametrize("group", [1, 3])
def test_length_buckets_give_the_same_logprobs_and_gradients_with_less_padding(policy, group):
    """response_logprobs runs a big batch in passes of whole prompt groups sorted by length, each cut to its own
    longest prompt and response: the rows come back in their order, with the one-pass numbers and gradients, and
    the passes see fewer token columns in all than one pass over the padded batch."""
    model, tok = policy
    prompts = [p for p in PROMPTS for _ in range(3)]
    out = sample(model, tok, prompts, SampleConfig(max_new_tokens=12), generator=_gen(5))
    lengths = out.response_mask.sum(1)
    assert lengths.min() < lengths.max() < out.response_mask.shape[1] + 1   # replies of different lengths
    args = (out.prompt_ids, out.prompt_mask, out.response_ids, out.response_mask)
    seen = []
    hook = model.transformer.wte.register_forward_hook(lambda m, inputs, output: seen.append(inputs[0].numel()))
    results = {}
    try:
        for rows in (None, 3, 6):
            model.zero_grad()
            seen.clear()
            logprobs = response_logprobs(model, *args, group=group, bucket_rows=rows)
            logprobs.sum().backward()
            grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            results[rows] = (logprobs.detach(), grads, sum(seen))
    finally:
        hook.remove()
    plain, plain_grads, plain_tokens = results[None]
    assert torch.allclose(plain, out.logprobs, atol=1e-5)
    for rows in (3, 6):
        logprobs, grads, tokens = results[rows]
        assert logprobs.shape == plain.shape
        assert torch.allclose(logprobs, plain, atol=1e-5)
        assert torch.equal(logprobs == 0, plain == 0)                       # padding stays 0, in place
        assert torch.allclose(grads, plain_grads, rtol=1e-4, atol=1e-6)
        assert tokens < plain_tokens


def test_shared_prefill_draws_the_same_samples(policy, monkeypatch):
    """sample() prefills runs of identical prompts once; the draw is the one without sharing."""
    import rlhf_lab.generation as generation

    model, tok = policy
    grouped = [p for p in PROMPTS for _ in range(4)]
    assert generation._run_length(grouped) == 4 and generation._run_length(PROMPTS * 4) == 1
    assert generation._run_length(grouped[:-1]) == 1
    shared = sample(model, tok, grouped, SampleConfig(max_new_tokens=12), generator=_gen(5))
    monkeypatch.setattr(generation, "_run_length", lambda prompts: 1)
    plain = sample(model, tok, grouped, SampleConfig(max_new_tokens=12), generator=_gen(5))
    assert torch.equal(shared.response_ids, plain.response_ids) and shared.texts == plain.texts
    assert torch.allclose(shared.logprobs, plain.logprobs, atol=1e-5)



def test_preallocated_cache_draws_what_the_models_own_cache_draws(policy, monkeypatch):
    """sample() writes keys and values into a preallocated cache (no copy of the cache per step) and drops ended
    rows from the model's batch; the draw and the log-probs are those of the model's own cache with every row:
    left padding, k = 1 and 4, temperature, top-k/top-p, rows ending at different steps."""
    import rlhf_lab.generation as generation

    model, tok = policy
    made, batch_sizes = [], []

    def spy(*args):
        made.append(preallocated(*args))
        return made[-1]

    def drop_spy(*args):
        rows, logits = drop(*args)
        if rows is not None:
            batch_sizes.append(len(rows))
        return rows, logits
    preallocated, drop = generation._preallocated_cache, generation._drop_ended_rows
    monkeypatch.setattr(generation, "_preallocated_cache", spy)
    monkeypatch.setattr(generation, "_drop_ended_rows", drop_spy)
    settings = [(1, SampleConfig(max_new_tokens=12)), (4, SampleConfig(max_new_tokens=12, temperature=0.7)),
                (4, SampleConfig(max_new_tokens=40, top_k=20, top_p=0.9))]
    for k, config in settings:
        prompts = [p for p in PROMPTS for _ in range(k)]
        fast = sample(model, tok, prompts, config, generator=_gen(7))
        with monkeypatch.context() as m:
            m.setattr(generation, "_preallocated_cache", lambda *args: None)
            plain = sample(model, tok, prompts, config, generator=_gen(7))
        assert torch.equal(fast.response_ids, plain.response_ids) and fast.texts == plain.texts
        assert torch.equal(fast.response_mask, plain.response_mask) and torch.equal(fast.ended, plain.ended)
        assert torch.allclose(fast.logprobs, plain.logprobs, atol=1e-5)
    assert fast.response_ids.shape[1] < 40 and fast.ended.all()       # every row ended (EOS bonus) before the cap
    if generation.DynamicLayer is not None:     # transformers 5.x: the preallocated cache was used
        assert len(made) == len(settings) and all(c is not None for c in made)
        assert batch_sizes and min(batch_sizes) >= 4    # and rows that had ended left the batch (never below 4)
    else:                                       # older transformers: the model's own cache, as before
        assert made == [None] * len(settings)


def test_preallocated_layer_grows_like_a_dynamic_layer_when_full():
    import rlhf_lab.generation as generation

    if generation.DynamicLayer is None:
        pytest.skip("this transformers has no per-layer cache objects (sample keeps the model's own cache)")
    prompt = generation.DynamicLayer()
    prompt.update(torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4))
    plain = generation.DynamicLayer()
    plain.update(prompt.keys.repeat_interleave(2, 0), prompt.values.repeat_interleave(2, 0))
    layer = generation._PreallocatedLayer(prompt, group=2, capacity=7)
    for _ in range(4):       # the third and fourth tokens do not fit: concatenated instead, as a DynamicLayer does
        k, v = torch.randn(4, 3, 1, 4), torch.randn(4, 3, 1, 4)
        for a, b in zip(layer.update(k, v), plain.update(k, v)):
            assert torch.equal(a, b)
    assert layer.get_seq_length() == plain.get_seq_length() == 9


def test_ready_made_step_mask_draws_what_the_2d_mask_draws(policy, tmp_path, monkeypatch):
    """With SDPA attention, each decoding step gets its (B, 1, 1, L) boolean mask ready-made instead of the 2D mask
    transformers turns into it at every step (with vmap in 4.x): the same tokens and log-probs, bit for bit, on the
    test GPT-2 and on the Llama stand-in (a chat template, grouped-query attention), with left padding and rows
    ending at different steps."""
    import rlhf_lab.generation as generation
    from rlhf_lab import models
    from standins import build_llama_chat

    llama, llama_tok = models.load_policy(build_llama_chat(tmp_path / "llama"))
    used = []

    def spy(mask):
        used.append(step_mask(mask).shape)
        return step_mask(mask)
    step_mask = generation._step_mask
    monkeypatch.setattr(generation, "_step_mask", spy)
    for model, tok in (policy, (llama.eval(), llama_tok)):
        assert generation._takes_bool_mask(model)                 # both attend with SDPA
        for k, config in ((1, SampleConfig(max_new_tokens=12)), (4, SampleConfig(max_new_tokens=30, top_k=20))):
            prompts = [p for p in PROMPTS for _ in range(k)]
            used.clear()
            ready = sample(model, tok, prompts, config, generator=_gen(3))
            assert used and all(len(shape) == 4 and shape[1:3] == (1, 1) for shape in used)
            with monkeypatch.context() as m:
                m.setattr(generation, "_takes_bool_mask", lambda model: False)
                plain = sample(model, tok, prompts, config, generator=_gen(3))
            assert torch.equal(ready.response_ids, plain.response_ids) and ready.texts == plain.texts
            assert torch.equal(ready.response_mask, plain.response_mask)
            assert torch.equal(ready.logprobs, plain.logprobs)
    assert not generation._step_mask(torch.tensor([[0, 1, 1]]))[0, 0, 0, 0]   # a pad column is not attended


def test_other_attention_implementations_keep_the_2d_mask(policy, monkeypatch):
    """Eager attention adds a float mask: it gets the 2D mask, as transformers expects, and samples as before."""
    import rlhf_lab.generation as generation

    model, tok = policy
    model.config._attn_implementation = "eager"
    try:
        assert not generation._takes_bool_mask(model)
        monkeypatch.setattr(generation, "_step_mask", lambda mask: pytest.fail("a ready-made mask under eager"))
        out = sample(model, tok, PROMPTS, SampleConfig(max_new_tokens=8), generator=_gen(1))
    finally:
        model.config._attn_implementation = "sdpa"
    assert out.response_ids.shape[0] == len(PROMPTS)
