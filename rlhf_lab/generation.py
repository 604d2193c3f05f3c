"""Batched sampling with per-token log-probabilities, and the log-probability of given responses.

Every RLHF method in the course needs the same two numbers for a response y to a prompt x:

    log pi(y | x) = sum_t log pi(y_t | x, y_<t)          (one term per response token)

:func:`sample` draws responses and returns those per-token terms under the sampling policy;
:func:`response_logprobs` recomputes them for any model (the reference model, the policy after an
update, DPO's chosen/rejected pairs), with gradients when the model has them.

Tensors follow one layout (B = batch, P = prompt length, T = response length):

    prompt_ids, prompt_mask        (B, P)  LEFT-padded, so every prompt ends at column P-1
    response_ids, response_mask    (B, T)  RIGHT-padded; mask is 1 on real tokens including EOS

Because prompts are left-padded, a token's position is not its column: position ids come from
the attention mask (``cumsum(mask) - 1``), so a prompt starts at position 0 whatever its padding.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, fields

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

try:  # transformers 5.x: a Cache is a list of per-layer objects, which sample() can swap for preallocated ones
    from transformers.cache_utils import DynamicCache, DynamicLayer
except ImportError:  # older transformers (e.g. the 4.46 lower bound): sample() keeps the cache the model returns
    DynamicCache = DynamicLayer = None

from rlhf_lab.models import USER_TURN, end_of_reply_id, has_chat_template, tokenize_prompts, tokenize_responses


@dataclass
class Batch:
    """Prompts and responses as padded token tensors (see the module docstring for the layout)."""
    prompt_ids: torch.Tensor      # (B, P) long, left-padded with the pad token
    prompt_mask: torch.Tensor     # (B, P) long, 1 on real prompt tokens
    response_ids: torch.Tensor    # (B, T) long, right-padded with the pad token after EOS
    response_mask: torch.Tensor   # (B, T) long, 1 on real response tokens including EOS

    def to(self, device: str | torch.device) -> "Batch":
        """A copy with every tensor moved to ``device`` (other fields unchanged)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return type(self)(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in values.items()})

    def __len__(self) -> int:
        return self.prompt_ids.shape[0]


@dataclass
class Samples(Batch):
    """What :func:`sample` returns: the batch tensors, the decoded texts and the sampling log-probs."""
    texts: list[str]              # B decoded responses (without the format's leading space and EOS)
    logprobs: torch.Tensor        # (B, T) float, log pi(y_t | x, y_<t) at temperature 1; 0 where mask is 0
    ended: torch.Tensor           # (B,) bool: True where the response ended with EOS, False where it hit max_new_tokens


#: The course's response length cap: the reference ends >= 97 % of its replies within it (rlhf_lab/pretrain.py).
MAX_NEW_TOKENS = 56


@dataclass
class SampleConfig:
    """How :func:`sample` draws tokens."""
    max_new_tokens: int = MAX_NEW_TOKENS  # response length cap; a response that hits it has no EOS
    temperature: float = 1.0      # divides the logits before sampling; 0 means greedy (argmax)
    top_k: int = 0                # keep only the k most likely tokens before sampling; 0 = all
    top_p: float = 1.0            # nucleus sampling: smallest set of tokens with this much mass; 1 = all


# ---------------------------------------------------------------------------- tokenizing
def pad_left(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into (B, L) ids and mask, padding on the left."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
    return ids, mask


def pad_right(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into (B, L) ids and mask, padding on the right."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Format (``models.format_prompt``), tokenize and left-pad prompts: (B, P) ids and mask."""
    return pad_left(tokenize_prompts(tokenizer, prompts), _pad_id(tokenizer))


def encode(tokenizer: PreTrainedTokenizerBase, prompts: list[str], responses: list[str]) -> Batch:
    """Turn prompt and response texts into a :class:`Batch`; each response gets EOS appended.

    Use it to score given responses (``response_logprobs``), e.g. DPO's chosen and rejected replies.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"encode got {len(prompts)} prompts but {len(responses)} responses")
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts)
    response_ids, response_mask = pad_right(tokenize_responses(tokenizer, responses), _pad_id(tokenizer))
    return Batch(prompt_ids, prompt_mask, response_ids, response_mask)


def decode_responses(tokenizer: PreTrainedTokenizerBase, response_ids: torch.Tensor,
                     response_mask: torch.Tensor) -> list[str]:
    """Texts of (B, T) response tokens: masked tokens and special tokens (EOS) dropped, spaces stripped."""
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(response_ids, response_mask)]
    texts = tokenizer.batch_decode(rows, skip_special_tokens=True)
    if not has_chat_template(tokenizer):
        texts = [t.split(USER_TURN, 1)[0] for t in texts]   # an invented next turn is not part of the reply
    return [t.strip() for t in texts]


# ---------------------------------------------------------------------------- log-probs
def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position of each token among the real tokens of its row: (B, L) mask -> (B, L) long, 0 on left padding."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] per position. logits (B, T, V), tokens (B, T) -> (B, T) float32.

    Computed as ``logit[token] - logsumexp(logits)`` so no second (B, T, V) tensor is made
    (this matters for hub models with 50k-150k token vocabularies).
    """
    logits = logits.float()
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


#: Rows per forward pass in :func:`response_logprobs` (whole prompt groups, sorted by length); None: one pass.
#: On 2 CPU cores (``python benchmarks/sampling.py``, one run each, +-10 % from run to run), an RL step of 64 replies
#: capped at 56 tokens (1,700 tokens in 3,600 padded columns): reference pass 7-16 % and update 12-27 % faster than
#: one pass. Where little is padding it can cost: capped at 32 tokens (77 % of the columns real) the reference pass
#: took 31 % longer, the update 2 % (``--max-new-tokens 32``). Passes of 32 rows (``--bucket-rows 32``) made those
#: -14 %, -20 %, -22 % and +5 %, but in headless course runs (seeds 0 and 1) the DPO cells of notebooks 07 and 10
#: took 6-36 % longer with them (a cell of 09 that does not call this took 18 % longer too: the machine varies).
LENGTH_BUCKET_ROWS = 16


def response_logprobs(model: PreTrainedModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                      response_ids: torch.Tensor, response_mask: torch.Tensor, group: int = 1,
                      bucket_rows: int | None = LENGTH_BUCKET_ROWS) -> torch.Tensor:
    """Per-token log pi(y_t | x, y_<t) of given responses under ``model`` (temperature 1).

    prompt_ids, prompt_mask: (B, P), left-padded. response_ids, response_mask: (B, T), right-padded.
    Returns (B, T) float32, 0 where ``response_mask`` is 0. A forward pass over prompt + response;
    gradients flow when the model's parameters require them (wrap in ``torch.no_grad()`` otherwise).

    ``group``: when the rows come in runs of ``group`` identical prompts (the k samples per prompt of RLOO and
    GRPO), each prompt is run once and its keys and values are shared by its ``group`` responses (prefix
    sharing): the same numbers up to float rounding, with (group - 1) / group of the prompt's compute saved.

    ``bucket_rows``: a batch of sampled replies is mostly padding (on the tiny policy the longest of 64 replies
    has 56 tokens, the mean about 26), and padding costs as much compute as a real token. So a batch of more
    than ``bucket_rows`` rows is run in passes of about that many rows, whole prompt groups sorted by their
    longest response, each pass cut to its own longest prompt and response; the results go back in the rows'
    order. The same numbers up to float rounding, gradients included (one graph over all passes).
    ``benchmarks/sampling.py`` measures it. None: one pass over the whole batch.
    """
    check_length(model, prompt_ids.shape[1] + response_ids.shape[1])
    B, T = response_ids.shape
    if group > 1 and (B % group or not torch.equal(prompt_ids.view(B // group, group, -1),
                                                   prompt_ids[::group].unsqueeze(1).expand(-1, group, -1))):
        raise ValueError(f"group={group}: the {B} rows must come in runs of {group} identical prompts "
                         "(as [p0, p0, ..., p1, p1, ...]); pass group=1 otherwise")
    if bucket_rows is None or B <= bucket_rows:
        return _trimmed_logprobs(model, prompt_ids, prompt_mask, response_ids, response_mask, group, T)
    longest = _extent(response_mask).view(-1, group).amax(1)          # (B / group,) each group's longest reply
    order = torch.argsort(longest, stable=True)
    offsets = torch.arange(group, device=order.device)
    rows, parts = [], []
    for units in order.split(max(1, bucket_rows // group)):
        idx = (units.unsqueeze(1) * group + offsets).view(-1)         # the rows of these groups, in runs of group
        parts.append(_trimmed_logprobs(model, prompt_ids[idx], prompt_mask[idx], response_ids[idx],
                                       response_mask[idx], group, T))
        rows.append(idx)
    inverse = torch.empty(B, dtype=torch.long, device=order.device)
    inverse[torch.cat(rows)] = torch.arange(B, device=order.device)
    return torch.cat(parts)[inverse]


def _trimmed_logprobs(model: PreTrainedModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                      response_ids: torch.Tensor, response_mask: torch.Tensor, group: int, width: int) -> torch.Tensor:
    """One forward pass, without the prompt columns that are padding in every row (on the left) and the
    response columns that are padding in every row (on the right). Returns (B, width), 0 on padding."""
    P = prompt_ids.shape[1]
    first = int(prompt_mask.any(0).long().argmax()) if prompt_mask.any() else P - 1   # keep at least one column
    length = max(1, int(_extent(response_mask).max()))
    logprobs = _one_pass_logprobs(model, prompt_ids[:, first:], prompt_mask[:, first:], response_ids[:, :length],
                                  response_mask[:, :length], group)
    return torch.nn.functional.pad(logprobs, (0, width - logprobs.shape[1])) if logprobs.shape[1] < width else logprobs


def _extent(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B,): one past each row's last column where ``mask`` is 1 (0 for a row of zeros)."""
    columns = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    return (mask.bool() * columns).amax(1) if mask.shape[1] else mask.new_zeros(mask.shape[0])


def _one_pass_logprobs(model: PreTrainedModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                       response_ids: torch.Tensor, response_mask: torch.Tensor, group: int) -> torch.Tensor:
    """:func:`response_logprobs` of all rows in one forward pass (with prefix sharing when ``group`` > 1)."""
    if group > 1:
        return _shared_prefix_logprobs(model, prompt_ids, prompt_mask, response_ids, response_mask, group)
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=position_ids_from_mask(attention_mask), use_cache=False).logits
    P, T = prompt_ids.shape[1], response_ids.shape[1]
    # The logits at column j predict the token at column j + 1: response token t is predicted at P - 1 + t.
    logprobs = token_logprobs(logits[:, P - 1:P - 1 + T], response_ids)
    return logprobs * response_mask.to(logprobs.dtype)


def _shared_prefix_logprobs(model: PreTrainedModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                            response_ids: torch.Tensor, response_mask: torch.Tensor, group: int) -> torch.Tensor:
    """:func:`response_logprobs` with each run of ``group`` identical prompts computed once (see there; it checks
    that the rows come in such runs)."""
    P, T = prompt_ids.shape[1], response_ids.shape[1]
    last, cache = _prefill(model, prompt_ids, prompt_mask, group)
    first = last.unsqueeze(1)                                     # (B, 1, V): predicts response token 0
    if T == 1:
        logits = first
    else:
        attention_mask = torch.cat([prompt_mask, response_mask[:, :-1]], dim=1)
        rest = model(input_ids=response_ids[:, :-1], attention_mask=attention_mask,
                     position_ids=position_ids_from_mask(attention_mask)[:, P:], use_cache=True,
                     **{_cache_argument(model): cache}).logits   # (B, T - 1, V): predict tokens 1 .. T - 1
        logits = torch.cat([first, rest], dim=1)
    logprobs = token_logprobs(logits, response_ids)
    return logprobs * response_mask.to(logprobs.dtype)


def _prefill(model: PreTrainedModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, group: int = 1,
             repeat_cache: bool = True):
    """Run the left-padded prompts (B, P), each run of ``group`` identical rows once (prefix sharing).

    Returns the logits at the last prompt column, (B, V), and the KV cache of the prompts for all B rows
    (each prompt's keys and values repeated ``group`` times; with ``repeat_cache=False``, for the B / group
    distinct prompts only: :func:`_repeat_cache` or :func:`_preallocated_cache` makes the B rows).
    """
    mask = prompt_mask[::group]
    out = model(input_ids=prompt_ids[::group], attention_mask=mask, position_ids=position_ids_from_mask(mask),
                use_cache=True)
    logits, cache = out.logits[:, -1], getattr(out, _cache_argument(model))
    if group > 1:
        logits = logits.repeat_interleave(group, dim=0)
        if repeat_cache:
            cache = _repeat_cache(cache, group)
    return logits, cache


def _repeat_cache(cache, group: int):
    """The KV cache with each row repeated ``group`` times (in place for a ``Cache`` object)."""
    if group == 1:
        return cache
    if isinstance(cache, tuple):   # transformers 4.x models may return the legacy cache: per layer (keys, values)
        return tuple(tuple(t.repeat_interleave(group, dim=0) for t in layer) for layer in cache)
    cache.batch_repeat_interleave(group)
    return cache


def sequence_logprob(model: PreTrainedModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                     response_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """log pi(y | x) = sum over response tokens of :func:`response_logprobs`. Shape: (B,)."""
    return response_logprobs(model, prompt_ids, prompt_mask, response_ids, response_mask).sum(-1)


# ---------------------------------------------------------------------------- sampling
@torch.no_grad()
def sample(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
           config: SampleConfig | None = None, generator: torch.Generator | None = None) -> Samples:
    """Sample one response per prompt text, in one batch, with a hand-written loop and a KV cache.

    Prompts are formatted with ``models.format_prompt`` and left-padded. Each row stops at its own
    EOS: the EOS is kept (mask 1), every later column is the pad token with mask 0 and log-prob 0.
    The loop ends when all rows have ended or after ``config.max_new_tokens``. The model runs in
    eval mode (no dropout) during sampling and is put back in the mode it was in.

    ``logprobs`` are log-probs of the sampled tokens under the UNMODIFIED policy: log_softmax of the
    raw logits, temperature 1, no top-k/top-p truncation; i.e. exactly what ``response_logprobs``
    returns for the same tokens. (Temperature, top-k and top-p change only which tokens are drawn.)
    RL treats these as log pi_old(y_t | ...). With the default config they are the sampling log-probs.

    Shapes: prompt_ids/prompt_mask (B, P); response_ids/response_mask/logprobs (B, T) with
    T <= max_new_tokens (the longest response, EOS included). ``generator`` (a ``torch.Generator``)
    makes the draw reproducible; None uses torch's global generator. One on the model's device is fastest;
    a CPU generator with a model on a GPU also works (each token is drawn on the CPU), so notebooks that
    seed ``torch.Generator()`` run unchanged on a GPU.

    Why a loop and not ``model.generate``: generate cannot take a generator and does not return
    unmodified log-probs; and on the tiny policy the loop is faster (2 CPU cores, 64 prompts x 40
    new tokens: 0.9 s against 1.15 s for ``generate(do_sample=True)`` plus the second pass it needs for
    the log-probs). When the prompts come in runs of identical ones (k samples per prompt), each is
    prefilled once and its keys and values are shared (prefix sharing: the same draw, less compute).
    Where the model's cache allows it (transformers 5.x, full attention), the cache has room for all the new tokens
    and is written in place instead of concatenated, and on the CPU rows that have ended leave the model's batch
    (see ``_drop_ended_rows``); the tokens and log-probs are those of the plain loop.
    """
    config = config or SampleConfig()
    was_training = model.training
    model.eval()  # no dropout while sampling, so the log-probs are those of the policy itself
    try:
        return _sample(model, tokenizer, prompts, config, generator)
    finally:
        model.train(was_training)


def _sample(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
            config: SampleConfig, generator: torch.Generator | None) -> Samples:
    device = model.device
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts)
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    B, P = prompt_ids.shape
    check_length(model, P + config.max_new_tokens)
    pad_id, eos_id = _pad_id(tokenizer), end_of_reply_id(tokenizer)
    # Without a chat template a model may go on to invent the user's next turn: "\nUser:" ends a reply too.
    stop = None if has_chat_template(tokenizer) else torch.tensor(
        tokenizer(USER_TURN, add_special_tokens=False)["input_ids"], device=device)

    tokens, masks, logps = [], [], []
    alive = torch.ones(B, dtype=torch.bool, device=device)      # rows that have not emitted EOS yet
    # The attention mask of every step, preallocated: step t writes column P + t and passes the first P + t + 1.
    full_mask = prompt_mask.new_zeros((B, P + config.max_new_tokens))
    full_mask[:, :P] = prompt_mask
    # With SDPA attention the mask goes in ready-made, (B, 1, 1, P + t + 1) booleans: the one new query sees every
    # real token so far. transformers would build that same mask from the 2D one at every step (4.x with vmap, which
    # took half of the sampling time).
    step_mask = _step_mask if _takes_bool_mask(model) else (lambda mask: mask)
    position_ids = position_ids_from_mask(prompt_mask)
    cache_kw = _cache_argument(model)
    # Prefill: the prompts once. When they come in runs of g identical prompts (k samples per prompt),
    # each is run once and its keys and values are repeated g times (prefix sharing; same numbers).
    group = _run_length(prompts)
    logits, past = _prefill(model, prompt_ids, prompt_mask, group, repeat_cache=False)   # past: keys and values so far
    # A cache with room for all the new tokens, written in place (a DynamicCache concatenates, copying the whole
    # batch's keys and values at every step); when the model's cache is not one that can be swapped, its own.
    fast = _preallocated_cache(past, group, P + config.max_new_tokens)
    past = fast if fast is not None else _repeat_cache(past, group)
    logits = logits.float()                                     # (B, V) next-token logits
    rows = None      # the rows in the model's batch: all B, or (once ended rows are dropped) their indices
    for t in range(config.max_new_tokens):
        next_token = _draw(logits, config, generator)           # (B,)
        next_token = torch.where(alive, next_token, torch.full_like(next_token, pad_id))
        logp = token_logprobs(logits.unsqueeze(1), next_token.unsqueeze(1)).squeeze(1)
        tokens.append(next_token)
        masks.append(alive.long())
        logps.append(torch.where(alive, logp, torch.zeros_like(logp)))
        alive = alive & (next_token != eos_id)
        if stop is not None and len(tokens) >= len(stop):
            alive = alive & ~(torch.stack(tokens[-len(stop):], dim=1) == stop).all(1)
        if not alive.any() or t == config.max_new_tokens - 1:
            break
        full_mask[:, P + t] = masks[-1]
        position_ids = position_ids[:, -1:] + 1
        if fast is not None and device.type == "cpu":   # ended rows leave the batch (their draws are still made)
            rows, logits = _drop_ended_rows(past, alive, rows, logits)
        if rows is None:
            out = model(input_ids=next_token.unsqueeze(1), attention_mask=step_mask(full_mask[:, :P + t + 1]),
                        position_ids=position_ids, use_cache=True, **{cache_kw: past})
            logits = out.logits[:, -1].float()
        else:   # the rows out of the batch keep stale logits: their draws become pad tokens, as before
            out = model(input_ids=next_token[rows].unsqueeze(1), attention_mask=step_mask(full_mask[rows, :P + t + 1]),
                        position_ids=position_ids[rows], use_cache=True, **{cache_kw: past})
            logits[rows] = out.logits[:, -1].float()
        past = getattr(out, cache_kw)

    response_ids = torch.stack(tokens, dim=1) if tokens else prompt_ids.new_zeros((B, 0))
    response_mask = torch.stack(masks, dim=1) if masks else prompt_mask.new_zeros((B, 0))
    logprobs = torch.stack(logps, dim=1) if logps else torch.zeros((B, 0), device=device)
    texts = decode_responses(tokenizer, response_ids.cpu(), response_mask.cpu())
    return Samples(prompt_ids, prompt_mask, response_ids, response_mask, texts=texts, logprobs=logprobs,
                   ended=~alive)


def _takes_bool_mask(model: PreTrainedModel) -> bool:
    """True when ``model`` attends with SDPA, which takes a ready 4D boolean mask as it is (True: attend)."""
    return getattr(model.config, "_attn_implementation", None) == "sdpa"


def _step_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) 0/1 mask of one decoding step -> (B, 1, 1, L) booleans: the step's single query (the token in the last
    column) attends to every column marked 1; none lies after it, so the mask is also causal."""
    return mask[:, None, None, :].bool()


class _PreallocatedLayer(DynamicLayer if DynamicLayer is not None else object):
    """A ``DynamicLayer`` whose keys and values live in buffers with room for ``capacity`` tokens.

    ``update`` writes the new tokens in place and returns views of the filled part: the same tensors,
    shapes and numbers as a ``DynamicLayer`` (which concatenates), without copying the cache at every step.
    Built from a prefilled layer whose rows are repeated ``group`` times (prefix sharing) as they are copied in.
    """

    def __init__(self, layer, group: int, capacity: int):
        super().__init__()
        keys, values = layer.keys, layer.values
        b, heads, n = keys.shape[:3]
        self._buffers = []
        for t in (keys, values):
            buffer = t.new_empty((b * group, heads, capacity, t.shape[-1]))   # only [:, :, :n] is ever read
            repeated = t.unsqueeze(1).expand(b, group, heads, n, t.shape[-1])   # each row group times
            buffer.view(b, group, heads, capacity, t.shape[-1])[:, :, :, :n].copy_(repeated)
            self._buffers.append(buffer)
        self.device, self.is_initialized, self._length = keys.device, True, n
        self.keys, self.values = (buffer[:, :, :n] for buffer in self._buffers)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows ``indices`` (new buffers, as a DynamicLayer's would be)."""
        self._buffers = [buffer.index_select(0, indices) for buffer in self._buffers]
        self.keys, self.values = (buffer[:, :, :self._length] for buffer in self._buffers)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        key_buffer, value_buffer = self._buffers
        start, end = self._length, self._length + key_states.shape[-2]
        if end > key_buffer.shape[2] or self.keys.data_ptr() != key_buffer.data_ptr() \
                or self.keys.shape[2] != start:   # full, or replaced (crop, reorder...): grow as a DynamicLayer does
            return super().update(key_states, value_states, *args, **kwargs)
        key_buffer[:, :, start:end] = key_states
        value_buffer[:, :, start:end] = value_states
        self._length = end
        self.keys, self.values = key_buffer[:, :, :end], value_buffer[:, :, :end]
        return self.keys, self.values


def _preallocated_cache(cache, group: int, capacity: int):
    """``cache`` (a prefilled ``DynamicCache``) with its rows repeated ``group`` times into layers with room for
    ``capacity`` tokens (:class:`_PreallocatedLayer`); None where that cannot be done the same way: older
    transformers, the legacy tuple cache, a cache subclass or any layer other than a plain ``DynamicLayer``
    (sliding window, linear attention...), offloading. The caller then keeps the model's own cache.
    """
    if (DynamicCache is None or type(cache) is not DynamicCache or getattr(cache, "offloading", False)
            or not getattr(cache, "layers", None)):
        return None
    layers = cache.layers
    if any(type(layer) is not DynamicLayer or not isinstance(getattr(layer, "keys", None), torch.Tensor)
           or layer.keys.dim() != 4 or not 0 < layer.keys.shape[2] <= capacity for layer in layers):
        return None
    cache.layers = [_PreallocatedLayer(layer, group, capacity) for layer in layers]
    return cache


def _drop_ended_rows(cache, alive: torch.Tensor, rows: torch.Tensor | None, logits: torch.Tensor):
    """Drop the rows that have ended from the model's batch once a quarter of it has ended (a copy of the cache
    each time, so not at every step): returns the new ``rows`` (indices of the rows in the batch, None for all B)
    and ``logits`` (B, V), made a tensor of its own the first time, so that the batch's rows can be written into it.

    The numbers do not change: every row still gets its draw at every step (``categorical`` draws for all B rows,
    so the generator advances as before), and on the CPU a row's logits do not depend on the other rows in the
    batch, except that matrix products of 1-3 rows round differently, so the batch never goes below 4 rows.
    (Used on the CPU only: there the time is proportional to the rows; on a GPU it mostly is not.)
    """
    in_batch = alive if rows is None else alive[rows]
    kept = int(in_batch.sum())
    if kept < 4 or kept > 0.75 * len(in_batch):
        return rows, logits
    cache.batch_select_indices(in_batch.nonzero().squeeze(1))
    return alive.nonzero().squeeze(1), logits.clone() if rows is None else logits


def _run_length(prompts: list[str]) -> int:
    """g > 1 when ``prompts`` is runs of g identical prompts (``[p0] * g + [p1] * g + ...``), else 1."""
    g = 1
    while g < len(prompts) and prompts[g] == prompts[0]:
        g += 1
    if g == 1 or len(prompts) % g or any(prompts[i] != prompts[i - i % g] for i in range(len(prompts))):
        return 1
    return g


def _draw(logits: torch.Tensor, config: SampleConfig, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from (B, V) logits, after temperature, top-k and top-p. Returns (B,) long."""
    if config.temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {config.temperature}")
    if config.temperature == 0:
        return logits.argmax(-1)
    logits = logits / config.temperature
    if config.top_k > 0:
        kth = torch.topk(logits, min(config.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the mass of the tokens before it already reaches top_p (keeps at least one).
        drop_sorted = (probs.cumsum(-1) - probs) >= config.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return categorical(logits.softmax(-1), generator)


def categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of ``probs`` (B, V), drawn with probability ``probs[b, i]`` (rows need not sum to 1).

    Inverse-CDF sampling: one uniform u per row, scaled by the row's total, and the first index whose cumulative
    probability exceeds it. The same distribution as ``torch.multinomial(probs, 1)``, with one random number per
    row instead of V (multinomial drew V exponentials per row: on the CPU, 64 x 1024 took 1.5 ms against 0.1 ms
    here, and a batch of notebook 05's samples 5-20 % longer; ``benchmarks/sampling.py``). The cumulative sums are in float64, so that a token of
    probability 0 is never drawn and the last token keeps its share. ``generator`` may live on another device than
    ``probs`` (a CPU generator with a model on a GPU): the B uniforms are drawn on it and moved. Returns (B,) long.
    """
    cdf = probs.double().cumsum(-1)                                                   # (B, V)
    device = generator.device if generator is not None else probs.device
    u = torch.rand(probs.shape[0], 1, generator=generator, device=device, dtype=torch.float64).to(probs.device)
    total = cdf[:, -1:]
    index = torch.searchsorted(cdf, u * total, right=True)     # the first index with cdf > u * total
    last = (cdf < total).sum(-1, keepdim=True)                   # the last index with probability > 0
    return torch.minimum(index, last).squeeze(-1)               # (u * total may round up to total: rarely)


def _cache_argument(model: PreTrainedModel) -> str:
    """Name of the KV-cache argument and output: ``cache`` in transformers >= 5.x, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an eos token")
    return pad


def check_length(model: PreTrainedModel, length: int) -> None:
    """Clear error instead of an index error deep inside the model when a sequence is too long."""
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    if limit is not None and length > limit:
        raise ValueError(f"prompt + response is {length} tokens but {type(model).__name__} has only {limit} "
                         "positions: shorten the prompts or lower max_new_tokens")
