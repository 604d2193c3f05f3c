"""The transformer reward model: a language model with a scalar head, trained on clicks, and judged on held-out ones.

A reward model r(x, y) gives a number to a response y to a prompt x, and learns it from clicks between two
responses with the Bradley-Terry loss (``bradley_terry``). This one is the tiny GPT-2 backbone (or a hub model)
with a scalar head (``AutoModelForSequenceClassification`` with ``num_labels=1``), reading
``format_prompt(prompt) + format_response(response) + EOS`` (:func:`encode_for_reward`) and pooling the last
token that is not padding: ``*ForSequenceClassification`` looks for the last token that differs from
``pad_token_id``. The tiny policy has its own pad token, so that is the EOS; for a hub model whose pad token
*is* its EOS (gpt2, SmolLM2) it is the token before the EOS, which works as well.

* the model: :func:`load_reward_model`, :func:`save_reward_model`, :func:`score`.
* training: :func:`train_reward_model`, the course's pairwise trainer (``pairwise.train_pairwise``) with the
  reward head as the scorer. It needs many more clicks than the fifteen weights of ``linear_reward`` do, so it
  is trained on k-way comparisons (``reward_data.simulate_comparisons``: k responses to a prompt, every pair
  clicked), which give k(k-1)/2 clicks for k forward passes (InstructGPT's trick).
* evaluation, of any reward model (a ``linear_reward.LinearRewardModel``, this one, or any function
  ``f(prompts, responses) -> rewards``, :data:`Scorer`): :func:`accuracy` against the rater's clicks,
  :func:`gold_accuracy` against the noise-free gold preference, :func:`calibration`, :func:`worst_ranked`, and
  :func:`evaluate`, which puts these next to ``world.bayes_ceiling`` on the same pairs: the best accuracy any
  model can expect on noisy clicks. :class:`CachedScorer` makes a transformer read each held-out text once
  however often it is evaluated.
* the course's reward model (used from notebook 04 on): :func:`build_default_reward_model` trains it on the
  recipe of ``reward_data.DefaultRewardSetup`` (random pairs and minimal pairs) and saves it; the repository
  ships it in ``data/reward-model``, as it ships the tiny policy. :func:`default_reward_model` loads it, building
  it first if it is missing; ``python -m rlhf_lab.reward_model`` rebuilds it from the command line (about 8
  minutes on 2 cores).

Shapes: B = (prompt, response) texts, L = tokens; the model reads (B, L) right-padded ids and gives (B,) rewards.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel,
                          PreTrainedTokenizerBase)

from rlhf_lab import world
from rlhf_lab.bradley_terry import bradley_terry_loss
from rlhf_lab.generation import check_length, pad_right
from rlhf_lab.linear_reward import LinearRewardModel
from rlhf_lab.models import (DEFAULT_POLICY, portable_tokenizer_config, quiet_transformers, resolve_device,
                             resolve_model_source, tokenize_prompts, tokenize_responses, transformers_at_least)
from rlhf_lab.pairwise import Pairs, index_records, share_right, train_pairwise
from rlhf_lab.paths import DATA
from rlhf_lab.preferences import PreferenceRecord
from rlhf_lab.reward_data import DefaultRewardSetup, default_data, stage_data

#: The course's reward model, shipped with the repository (rebuilt by ``python -m rlhf_lab.reward_model``).
DEFAULT_REWARD_MODEL = DATA / "reward-model"
#: A file next to the saved weights that records how the reward model was trained and how well it did.
INFO_FILE = "reward_model_info.json"


# ----------------------------------------------------------------------------- the transformer reward model
def load_reward_model(name_or_path: str | Path = DEFAULT_POLICY, *, device: str | torch.device = "cpu",
                      dtype: torch.dtype | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A transformer reward model and its tokenizer: a backbone with a scalar head (``num_labels=1``).

    ``name_or_path`` is either a reward model saved by :func:`save_reward_model` (head included) or a
    language model (the course's tiny policy by default, or a hub name such as "gpt2"): then the head is
    new, initialised to small random weights, and the model must be trained (:func:`train_reward_model`).
    The head reads the hidden state of the last non-pad token: ``config.pad_token_id`` is set from the
    tokenizer (EOS when it has no pad token) so that ``GPT2ForSequenceClassification`` can find it, and
    the tokenizer pads on the right. ``dtype``: the weights' dtype, float32 when None (pass ``torch.bfloat16``
    to score with a big hub model on a GPU; train in float32). Returns the model (eval mode, on ``device``)
    and tokenizer.
    """
    source = resolve_model_source(name_or_path)
    with quiet_transformers():  # "score.weight newly initialised" is expected when starting from an LM
        tokenizer = AutoTokenizer.from_pretrained(source)
        dtype_kw = "dtype" if transformers_at_least(4, 56) else "torch_dtype"
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1,
                                                                   **{dtype_kw: dtype or torch.float32})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(resolve_device(device)).eval(), tokenizer   # "auto": the GPU if there is one


def save_reward_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path,
                      info: dict | None = None) -> Path:
    """Save model (safetensors) and tokenizer with ``save_pretrained``; ``info`` goes to ``reward_model_info.json``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    portable_tokenizer_config(path)
    if info is not None:
        (path / INFO_FILE).write_text(json.dumps(info, indent=1))
    return path


def encode_for_reward(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[world.Prompt | str],
                      responses: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """What the reward model reads: ``format_prompt(prompt) + format_response(response)`` + EOS, right-padded.

    The same tokens the policy sees and emits (``models.tokenize_prompts`` / ``tokenize_responses``), so
    the reward model scores exactly the policy's format. Returns (B, L) input ids and attention mask.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"encode_for_reward got {len(prompts)} prompts but {len(responses)} responses")
    if tokenizer.pad_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no pad token: load it with load_reward_model")
    texts = [p.text if isinstance(p, world.Prompt) else p for p in prompts]
    seqs = [p + r for p, r in zip(tokenize_prompts(tokenizer, texts), tokenize_responses(tokenizer, responses))]
    return pad_right(seqs, tokenizer.pad_token_id)


def reward_forward(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One forward pass of the reward model: (B, L) right-padded ids and mask -> (B,) rewards (with gradients)."""
    check_length(model, input_ids.shape[1])
    return model(input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device),
                 use_cache=False).logits.squeeze(-1).float()


#: Texts per forward pass when scoring. They are sorted by length first, so a small batch pads little: on 2 CPU
#: cores, an RL step's 64 replies score 1.6-1.7x faster at 16 than at 128, and 512 no slower
#: (``python benchmarks/reward_scoring.py``); the scores differ by float rounding only (< 1e-6).
SCORE_BATCH = 16


@torch.no_grad()
def score(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[world.Prompt | str],
          responses: Sequence[str], batch_size: int = SCORE_BATCH) -> torch.Tensor:
    """Rewards of (prompt, response) texts, batched, without gradients. Shape: (B,) float32 on the CPU.

    Texts are sorted by length before batching (less padding) and the result is put back in order;
    padding does not change a reward (the head reads the last real token, positions start at 0).
    """
    input_ids, mask = encode_for_reward(tokenizer, prompts, responses)
    order = torch.argsort(mask.sum(1), stable=True)
    out = torch.empty(len(order))
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = int(mask[idx].sum(1).max())
        out[idx] = reward_forward(model, input_ids[idx, :width], mask[idx, :width]).cpu()
    model.train(was_training)
    return out


# ----------------------------------------------------------------------------- training
@dataclass
class RewardTrainConfig:
    """How :func:`train_reward_model` trains a transformer reward model."""
    epochs: int = 1               # passes over the training records
    batch_size: int = 240         # records (pairs) per step; whole k-way groups stay together (2 groups of k = 16;
                                  # for independent pairs, about 32)
    lr: float = 5e-4              # peak AdamW learning rate (the tiny backbone takes a large one)
    weight_decay: float = 0.0     # AdamW decay on matrices (not biases, LayerNorms)
    warmup_fraction: float = 0.1  # share of steps with linear warm-up from 0; then linear decay to 0
    max_grad_norm: float = 1.0    # clip the global gradient norm to this
    seed: int = 0                 # seeds the order of the pairs in every epoch
    eval_batch_size: int = 128    # texts per forward pass when scoring validation pairs
    micro_batch_size: int | None = None  # texts per forward pass with gradients (None: a step's all at once);
                                  # the same gradient in less memory (accumulation.py)


@dataclass
class RewardHistory:
    """What :func:`train_reward_model` records."""
    loss: list[float] = field(default_factory=list)            # BT loss of each step's batch
    train_accuracy: list[float] = field(default_factory=list)  # share of the batch's pairs ranked right, per step
    val_accuracy: list[float] = field(default_factory=list)    # accuracy on the validation pairs after each epoch
    epoch_end_steps: list[int] = field(default_factory=list)   # number of steps done at the end of each epoch
    seconds: float = 0.0                                       # wall-clock training time (validation included)


@dataclass
class _Comparisons(Pairs):
    """Preference records as the trainer sees them: every distinct (prompt, response) text once, as one row;
    ``groups`` link the records that share responses (e.g. all pairs of one ranking)."""
    input_ids: torch.Tensor       # (U, L) right-padded, one row per distinct (prompt, response)
    attention_mask: torch.Tensor  # (U, L)

    @classmethod
    def from_records(cls, tokenizer: PreTrainedTokenizerBase, records: Sequence[PreferenceRecord]) -> "_Comparisons":
        """Encode each distinct (prompt, response) once and group the records that share responses."""
        texts, pairs = index_records(records, group_by="response")
        ids, mask = encode_for_reward(tokenizer, [p for p, _ in texts], [r for _, r in texts])
        return cls(pairs.chosen, pairs.rejected, pairs.targets, pairs.groups, ids, mask)


def train_reward_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                       train_records: Sequence[PreferenceRecord], val_records: Sequence[PreferenceRecord] = (),
                       config: RewardTrainConfig | None = None, progress: bool = True) -> RewardHistory:
    """Train a transformer reward model in place on preference records with ``bradley_terry_loss``.

    Each step takes about ``batch_size`` records and scores every distinct response among them once, in
    one forward pass. Records that share a response (the k(k-1)/2 pairs of one ranking of k responses,
    ``reward_data.simulate_comparisons``) always go into the same batch, so a ranking of k responses costs k
    forward passes for all its pairs: InstructGPT's trick (Ouyang et al. 2022, Sec. 3.5). The loop is the
    course's pairwise trainer (``pairwise.train_pairwise``: AdamW, linear warm-up then linear decay, gradient
    clipping, micro-batches) with the reward head as the scorer; dropout stays on. After every epoch the
    accuracy on ``val_records`` is measured (skipped when there are none). Ties train towards equal rewards.
    Raises FloatingPointError with the step number if the loss stops being finite. Returns a
    :class:`RewardHistory`; the model is left in eval mode.
    """
    config = config or RewardTrainConfig()
    if not train_records:
        raise ValueError("train_reward_model needs at least one training record")
    data = _Comparisons.from_records(tokenizer, train_records)

    def rewards(rows: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:     # (len(sub),) with gradients
        width = int(data.attention_mask[rows].sum(1).max())                  # the step's longest text
        return reward_forward(model, data.input_ids[rows[sub], :width], data.attention_mask[rows[sub], :width])

    def loss(chosen: torch.Tensor, rejected: torch.Tensor, targets: torch.Tensor):
        return bradley_terry_loss(chosen, rejected, targets=targets), chosen.detach(), rejected.detach()

    history = RewardHistory()
    model.train()
    return train_pairwise(
        model, data, rewards, loss, config, history,
        lambda chosen, rejected, _: history.train_accuracy.append((chosen > rejected).float().mean().item()),
        (lambda: accuracy(model, val_records, tokenizer, config.eval_batch_size)) if val_records else None,
        name="reward model", progress=progress)


# ----------------------------------------------------------------------------- evaluation
#: Anything that scores responses: a LinearRewardModel, a transformer reward model (pass its tokenizer),
#: or a function f(prompts, responses) -> (B,) rewards.
Scorer = LinearRewardModel | PreTrainedModel | Callable[[Sequence, Sequence[str]], torch.Tensor]


def rewards_of(model: Scorer, prompts: Sequence[world.Prompt | str], responses: Sequence[str],
               tokenizer: PreTrainedTokenizerBase | None = None, batch_size: int = SCORE_BATCH) -> torch.Tensor:
    """Rewards of (prompt, response) texts under any :data:`Scorer`. Shape: (B,)."""
    if isinstance(model, PreTrainedModel):
        if tokenizer is None:
            raise ValueError("a transformer reward model needs its tokenizer: pass tokenizer=...")
        return score(model, tokenizer, prompts, responses, batch_size)
    if isinstance(model, LinearRewardModel):
        return model.score(prompts, responses)
    if callable(model):
        return torch.as_tensor(model(prompts, responses), dtype=torch.float32)
    raise TypeError(f"cannot score with a {type(model).__name__}")


def reward_margins(model: Scorer, records: Sequence[PreferenceRecord],
                   tokenizer: PreTrainedTokenizerBase | None = None, batch_size: int = SCORE_BATCH) -> torch.Tensor:
    """r(chosen) - r(rejected) for each record. Shape: (B,). Chosen and rejected are scored in one call."""
    prompts = [r.prompt for r in records]
    rewards = rewards_of(model, prompts + prompts, [r.chosen for r in records] + [r.rejected for r in records],
                         tokenizer, batch_size)
    return rewards[:len(records)] - rewards[len(records):]


class CachedScorer:
    """A transformer reward model as a :data:`Scorer` that scores each (prompt, response) text only once.

    Evaluating one model several ways (:func:`evaluate`, :func:`calibration`, :func:`worst_ranked`) on
    the same held-out pairs then costs one pass over them.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = SCORE_BATCH):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.cache: dict[tuple[str, str], float] = {}

    def __call__(self, prompts: Sequence[world.Prompt | str], responses: Sequence[str]) -> torch.Tensor:
        keys = [(world.prompt_text(p), r) for p, r in zip(prompts, responses)]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if todo:
            rewards = score(self.model, self.tokenizer, [p for p, _ in todo], [r for _, r in todo], self.batch_size)
            self.cache.update(zip(todo, rewards.tolist()))
        return torch.tensor([self.cache[k] for k in keys])


def gold_scorer(prompts: Sequence[world.Prompt | str], responses: Sequence[str]) -> torch.Tensor:
    """``world.gold_reward`` as a :data:`Scorer`: evaluate the gold reward itself like a reward model."""
    return torch.tensor([world.gold_reward(p, r) for p, r in zip(prompts, responses)], dtype=torch.float32)


def _without_ties(records: Sequence[PreferenceRecord]) -> list[PreferenceRecord]:
    kept = [r for r in records if not r.tie]
    if not kept:
        raise ValueError("no pairs to evaluate (empty, or all ties)")
    return kept


def accuracy(model: Scorer, records: Sequence[PreferenceRecord], tokenizer: PreTrainedTokenizerBase | None = None,
             batch_size: int = SCORE_BATCH) -> float:
    """Share of pairs where r(chosen) > r(rejected), i.e. agreement with the rater's clicks. Ties are left out.

    An equal reward counts as half right (the model has no preference, a coin would be right half the time).
    """
    margins = reward_margins(model, _without_ties(records), tokenizer, batch_size)
    return share_right(margins)


def gold_accuracy(model: Scorer, records: Sequence[PreferenceRecord],
                  tokenizer: PreTrainedTokenizerBase | None = None, batch_size: int = SCORE_BATCH) -> float:
    """Share of pairs where the model prefers the side with the higher GOLD reward (noise-free labels).

    Pairs whose two responses have equal gold reward (within 1e-9) are left out, as are ties; a model
    with equal rewards for the two sides counts half.
    """
    records = _without_ties(records)
    gold = np.array([world.gold_reward(r.prompt, r.chosen) - world.gold_reward(r.prompt, r.rejected) for r in records])
    keep = np.abs(gold) > 1e-9
    if not keep.any():
        raise ValueError("every pair has equal gold rewards: nothing to evaluate")
    margins = reward_margins(model, [r for r, k in zip(records, keep) if k], tokenizer, batch_size).double().numpy()
    agree = np.sign(margins) * np.sign(gold[keep])
    return float(((agree > 0) + 0.5 * (agree == 0)).mean())


def calibration(model: Scorer, records: Sequence[PreferenceRecord], bins: int = 10,
                tokenizer: PreTrainedTokenizerBase | None = None,
                batch_size: int = SCORE_BATCH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Is P(chosen) = sigmoid(r_c - r_r) right? Predicted probability vs observed frequency, per bin.

    Every pair is counted twice, once in each order: (chosen, rejected) with predicted p and outcome 1,
    and (rejected, chosen) with predicted 1 - p and outcome 0, so a calibrated model lies on the diagonal
    over the whole range [0, 1]. Ties are left out. Returns three (bins,) arrays: the mean predicted
    probability in each of ``bins`` equal-width bins of [0, 1], the observed frequency of "first one
    chosen" there, and the number of (ordered) pairs; empty bins give NaN and count 0.
    """
    p = torch.sigmoid(reward_margins(model, _without_ties(records), tokenizer, batch_size)).double().numpy()
    pred = np.concatenate([p, 1 - p])
    outcome = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    which = np.clip((pred * bins).astype(int), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(which, weights=pred, minlength=bins) / counts
        observed = np.bincount(which, weights=outcome, minlength=bins) / counts
    return mean_pred, observed, counts


def worst_ranked(model: Scorer, records: Sequence[PreferenceRecord], n: int = 5,
                 tokenizer: PreTrainedTokenizerBase | None = None) -> list[tuple[PreferenceRecord, float, float]]:
    """The ``n`` pairs on which the model contradicts the GOLD reward most confidently, worst first.

    Returns (record, model margin r(chosen) - r(rejected), gold margin) triples; on each of them the two
    margins have opposite signs (or the model's is 0), and the model's is the largest such in size.
    """
    records = [r for r in records if not r.tie]
    model_margin = reward_margins(model, records, tokenizer).tolist()
    gold_margin = reward_margins(gold_scorer, records).tolist()
    wrong = [(m * math.copysign(1.0, g), i) for i, (m, g) in enumerate(zip(model_margin, gold_margin))
             if abs(g) > 1e-9 and m * g <= 0]
    return [(records[i], model_margin[i], gold_margin[i]) for _, i in sorted(wrong)[:n]]


def evaluate(model: Scorer, records: Sequence[PreferenceRecord], temperature: float,
             tokenizer: PreTrainedTokenizerBase | None = None, batch_size: int = SCORE_BATCH) -> dict[str, float]:
    """Held-out report: accuracy on the clicks, the Bayes ceiling on the same pairs, and more.

    ``temperature`` is the simulated rater's (it defines the ceiling). Keys:
    ``accuracy`` (against the clicks), ``ceiling`` (``world.bayes_ceiling``: the best any model can expect),
    ``gap`` (ceiling - accuracy, in accuracy units), ``expected_accuracy`` (the mean probability that the
    rater picks the side the model prefers: the accuracy without the luck of this particular set of clicks,
    directly comparable with ``ceiling``), ``gold_accuracy`` (against gold's preferred side), ``n`` (pairs).
    """
    records = _without_ties(records)
    margins = reward_margins(model, records, tokenizer, batch_size).double().numpy()
    rater = world.SimulatedRater(temperature=temperature)
    p_chosen = np.array([rater.prob_first(r.prompt, r.chosen, r.rejected) for r in records])
    ceiling = world.bayes_ceiling([(r.prompt, r.chosen, r.rejected) for r in records], temperature)
    right = (margins > 0) + 0.5 * (margins == 0)              # 1, 0.5 or 0 per pair, against the clicks
    # +1: gold prefers chosen, -1: rejected, 0: equal gold (float noise of ~1e-16 in the sums counts as equal)
    gold_side = np.where(np.abs(p_chosen - 0.5) > 1e-12, np.sign(p_chosen - 0.5), 0.0)
    agree = np.sign(margins) * gold_side
    acc = float(right.mean())
    return {"accuracy": acc, "ceiling": ceiling, "gap": ceiling - acc,
            "expected_accuracy": float((right * p_chosen + (1 - right) * (1 - p_chosen)).mean()),
            "gold_accuracy": float(((agree > 0) + 0.5 * (agree == 0))[gold_side != 0].mean()),
            "n": len(records)}


# ----------------------------------------------------------------------------- the course's reward model
def build_default_reward_model(path: str | Path | None = DEFAULT_REWARD_MODEL,
                               policy: str | Path = DEFAULT_POLICY, setup: DefaultRewardSetup | None = None,
                               progress: bool = True) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]:
    """Train the course's reward model on the shipped tiny policy, stage by stage, and save it to ``path``
    (None: don't save).

    Deterministic for a given setup (and thread count and library versions). Returns model, tokenizer and
    an info dict (the setup, the held-out report of :func:`evaluate`, each stage's history and seconds),
    which is also saved as ``reward_model_info.json`` next to the weights.
    """
    setup = setup or DefaultRewardSetup()
    start = time.perf_counter()
    _, held_out = default_data(dataclasses.replace(setup, stages=[]))
    torch.manual_seed(setup.head_seed)  # the new scalar head's initial weights
    model, tokenizer = load_reward_model(policy)
    histories = []
    for i, stage in enumerate(setup.stages):
        config = RewardTrainConfig(epochs=stage.epochs, batch_size=setup.batch_size, lr=stage.lr, seed=setup.seed)
        histories.append(asdict(train_reward_model(model, tokenizer, stage_data(setup, i), (), config,
                                                   progress=progress)))
    report = evaluate(model, held_out, setup.temperature, tokenizer)
    info = {"setup": asdict(setup), "policy": str(policy), "held_out": report, "history": histories,
            "train_seconds": sum(h["seconds"] for h in histories), "total_seconds": time.perf_counter() - start,
            "threads": torch.get_num_threads()}
    if path is not None:
        save_reward_model(model, tokenizer, path, info)
    return model, tokenizer, info


def default_reward_model(path: str | Path = DEFAULT_REWARD_MODEL, rebuild: bool = False,
                         progress: bool = True) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The course's reward model: loaded from ``path`` (shipped in ``data/reward-model``), built first if missing."""
    path = Path(path)
    if rebuild or not (path / "config.json").exists():
        print(f"no reward model at {path}: training the default one (about 8 minutes on 2 cores)...")
        build_default_reward_model(path, progress=progress)
    return load_reward_model(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train and save the course's default reward model.")
    parser.add_argument("--out", type=Path, default=DEFAULT_REWARD_MODEL, help="directory (default: %(default)s)")
    parser.add_argument("--policy", default=str(DEFAULT_POLICY), help="backbone (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest on a busy CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, _, info = build_default_reward_model(args.out, args.policy, DefaultRewardSetup(seed=args.seed))
    r = info["held_out"]
    print(f"saved {args.out} in {info['total_seconds']:.0f} s: held-out accuracy {r['accuracy']:.3f}, "
          f"Bayes ceiling {r['ceiling']:.3f} (gap {100 * r['gap']:.1f} points), gold accuracy {r['gold_accuracy']:.3f}")


if __name__ == "__main__":
    main()
