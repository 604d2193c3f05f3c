"""Pretrain the course's tiny policy on the simulated world's responses (the "SFT model" of RLHF).

    python -m rlhf_lab.pretrain                      # rebuild data/tiny-policy (about 4.5 min on 2 CPU cores)
    python -m rlhf_lab.pretrain --out /tmp/p --steps 100 --seed 1
    python -m rlhf_lab.pretrain --out build/backbone-6x256 --n-layer 6 --n-embd 256   # a larger model (12 min)

The corpus is ``world.response_corpus`` over the TRAIN prompts: template responses of mixed
quality (helpful and vague, polite and rude, on and off topic). A language model imitates the
mixture, so the pretrained policy is mediocre on the gold reward and RLHF has room to improve it.

Training is plain next-token prediction (cross-entropy on every token, prompts included), the
GPT recipe: every token is signal for a corpus this small; the prompt tokens teach the format,
and at sampling time the prompt is given, so learning it costs nothing. Documents are packed
into one token stream (``<|bos|> prompt response <|eos|>`` one after another) and cut into
windows of ``n_positions`` tokens, so no compute is spent on padding. AdamW with linear warm-up
and cosine decay (nanoGPT's schedule).

Same seed, same thread count, same library versions: same weights (tests/test_models.py checks it).
Next to the checkpoint goes ``training_log.json``: the loss curve, tokens/s, the implied FLOP/s
(6 x parameters x tokens/s, Kaplan et al. 2020) next to a measured fp32 matmul FLOP/s, and the
gold reward of the policy's samples against the corpus.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_lab import world
from rlhf_lab.generation import MAX_NEW_TOKENS, SampleConfig, sample
from rlhf_lab.models import (DEFAULT_POLICY, TinyGPTConfig, build_model, build_tokenizer, format_prompt,
                             format_response, num_parameters, save_policy, tokenize_prompts, tokenize_responses)
from rlhf_lab.seed import set_seed


@dataclass
class PretrainConfig:
    """Everything that decides the pretrained weights (with the corpus)."""
    model: TinyGPTConfig = field(default_factory=TinyGPTConfig)  # architecture and vocabulary size
    steps: int = 800            # optimizer steps (3.3M tokens, ~4.5 passes over the corpus: fluent at temperature 1)
    batch_size: int = 32        # windows per step: 32 x 128 = 4096 tokens, enough to keep 2 cores busy
    lr: float = 3e-3            # peak AdamW learning rate (small models take large rates)
    min_lr_fraction: float = 0.1  # the cosine decays to lr x this at the last step
    warmup_steps: int = 30      # linear warm-up from 0 to lr
    weight_decay: float = 0.1   # AdamW decay on matrices only (not biases, LayerNorms)
    max_grad_norm: float = 1.0  # clip the global gradient norm to this
    per_prompt: int = 64        # corpus size: candidate responses per training prompt
    seed: int = 0               # seeds the corpus, the initial weights and the window order


# ---------------------------------------------------------------------------- data
def build_corpus(per_prompt: int, seed: int, split: str = "train") -> list[tuple[str, str]]:
    """(prompt text, response) pairs: ``per_prompt`` candidates for each prompt of the world's ``split``."""
    train, test = world.split_prompts(world.load_prompts())
    prompts = {"train": train, "test": test}[split]
    return [(p.text, r) for p, r in world.response_corpus(prompts, per_prompt=per_prompt, seed=seed)]


def corpus_texts(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Each pair as the model reads it: ``format_prompt(prompt) + format_response(response)``."""
    return [format_prompt(p) + format_response(r) for p, r in pairs]


def pack(tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
    """All pairs as one token stream, each ``<|bos|> prompt response <|eos|>``. Shape: (N,) long."""
    prompts = tokenize_prompts(tokenizer, [p for p, _ in pairs])
    responses = tokenize_responses(tokenizer, [r for _, r in pairs])
    return torch.tensor([t for p, r in zip(prompts, responses) for t in p + r], dtype=torch.long)


def get_batch(tokens: torch.Tensor, batch_size: int, block: int,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of the stream (nanoGPT's ``get_batch``): inputs x and next tokens y, each (B, block)."""
    if len(tokens) <= block:
        raise ValueError(f"the corpus has {len(tokens)} tokens, fewer than one window of {block + 1}")
    starts = torch.randint(len(tokens) - block, (batch_size,), generator=generator)
    x = torch.stack([tokens[s:s + block] for s in starts.tolist()])
    y = torch.stack([tokens[s + 1:s + 1 + block] for s in starts.tolist()])
    return x, y


# ---------------------------------------------------------------------------- training
def lm_loss(model: PreTrainedModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy. x, y: (B, L) long; y is x shifted left by one. Returns a scalar."""
    logits = model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))


def lr_at(step: int, config: PretrainConfig) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine decay to lr x min_lr_fraction."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - 1 - config.warmup_steps)
    floor = config.lr * config.min_lr_fraction
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, config: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (dim >= 2) only, as in nanoGPT."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


def train(model: PreTrainedModel, tokens: torch.Tensor, config: PretrainConfig,
          progress: bool = True) -> dict:
    """Train ``model`` in place on the packed stream; returns the loss curve and the throughput."""
    block = model.config.n_positions
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    model.train()
    losses: list[float] = []
    step_seconds: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(config.steps), desc="pretraining", disable=not progress)
    for step in bar:
        step_start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        x, y = get_batch(tokens, config.batch_size, block, generator)
        loss = lm_loss(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        step_seconds.append(time.perf_counter() - step_start)
        if step % 10 == 0 or step == config.steps - 1:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    seconds = time.perf_counter() - start
    model.eval()
    n_tokens = config.steps * config.batch_size * block
    params = num_parameters(model)
    # On a shared machine the median step is a better estimate of what the hardware can do.
    median_step = sorted(step_seconds)[len(step_seconds) // 2]
    return {"loss": losses, "step_seconds": step_seconds, "train_seconds": seconds, "tokens_seen": n_tokens,
            "tokens_per_s": n_tokens / seconds, "tokens_per_s_median_step": config.batch_size * block / median_step,
            "params": params, "implied_flops_per_s": 6 * params * n_tokens / seconds}


@torch.no_grad()
def eval_loss(model: PreTrainedModel, tokens: torch.Tensor, block: int, batch_size: int = 32) -> float:
    """Mean next-token loss over consecutive windows of a held-out stream (every token counted once)."""
    n = (len(tokens) - 1) // block
    x = tokens[:n * block].view(n, block)
    y = tokens[1:n * block + 1].view(n, block)
    losses = [lm_loss(model, x[i:i + batch_size], y[i:i + batch_size]).item() * len(x[i:i + batch_size])
              for i in range(0, n, batch_size)]
    return sum(losses) / n


def pretrain(pairs: Sequence[tuple[str, str]], config: PretrainConfig,
             progress: bool = True) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]:
    """Train a tokenizer and then a tiny GPT-2 on (prompt, response) pairs. Returns model, tokenizer, log."""
    set_seed(config.seed)
    pairs = list(pairs)
    random.Random(config.seed).shuffle(pairs)  # neighbours in the stream come from different prompts
    tokenizer = build_tokenizer(corpus_texts(pairs), config.model.vocab_size)
    tokens = pack(tokenizer, pairs)
    set_seed(config.seed)
    model = build_model(config.model, tokenizer)
    log = train(model, tokens, config, progress=progress)
    log["corpus_tokens"] = len(tokens)
    log["epochs"] = log["tokens_seen"] / len(tokens)
    return model, tokenizer, log


# ---------------------------------------------------------------------------- measuring
def matmul_flops_per_s(n: int = 1024, repeats: int = 20) -> float:
    """Measured fp32 FLOP/s of an n x n matmul (2 n^3 FLOPs each) on this machine, best of 3 rounds."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * n**3 / best


def gold_report(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, seed: int,
                per_prompt: int = 8, max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """The policy's samples (temperature 1) on the TEST prompts against the corpus on the same prompts:
    mean gold reward, fluency (share of complete sentences in the phrasebook, share of replies that end
    with end-of-sequence within ``max_new_tokens``) and a few examples."""
    _, test = world.split_prompts(world.load_prompts())
    corpus = world.response_corpus(test, per_prompt=per_prompt, seed=seed + 1)
    prompts = [p for p in test for _ in range(per_prompt)]
    samples = sample(model, tokenizer, [p.text for p in prompts], SampleConfig(max_new_tokens=max_new_tokens),
                     generator=torch.Generator().manual_seed(seed))
    ended = samples.ended.tolist()
    policy = [world.gold_reward(p, r, e) for p, r, e in zip(prompts, samples.texts, ended)]
    fluency = world.fluency(samples.texts, ended)
    return {"policy_gold_mean": sum(policy) / len(policy),
            "corpus_gold_mean": sum(world.gold_reward(p, r) for p, r in corpus) / len(corpus),
            "policy_ended_with_eos": fluency["ended"],
            "policy_well_formed_sentences": fluency["well_formed"],
            "max_new_tokens": max_new_tokens,
            "examples": [{"prompt": p.text, "response": r} for p, r in zip(prompts[::per_prompt * 13],
                                                                            samples.texts[::per_prompt * 13])]}


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Pretrain the course's tiny policy (see rlhf_lab/pretrain.py).")
    parser.add_argument("--out", type=Path, default=DEFAULT_POLICY, help="checkpoint directory (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=PretrainConfig.steps, help="optimizer steps")
    parser.add_argument("--per-prompt", type=int, default=PretrainConfig.per_prompt, help="responses per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    shape = TinyGPTConfig()
    parser.add_argument("--n-layer", type=int, default=shape.n_layer, help="transformer blocks (default: %(default)s)")
    parser.add_argument("--n-embd", type=int, default=shape.n_embd, help="residual width (default: %(default)s)")
    parser.add_argument("--n-head", type=int, default=shape.n_head, help="attention heads (default: %(default)s)")
    args = parser.parse_args(argv)
    if min(args.n_layer, args.n_embd, args.n_head) < 1 or args.n_embd % args.n_head:
        parser.error(f"need --n-layer, --n-embd and --n-head >= 1 and --n-embd a multiple of --n-head; got "
                     f"--n-layer {args.n_layer} --n-embd {args.n_embd} --n-head {args.n_head}")
    torch.set_num_threads(args.threads)
    model_shape = replace(shape, n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head)
    config = PretrainConfig(model=model_shape, steps=args.steps, per_prompt=args.per_prompt, seed=args.seed)

    start = time.perf_counter()
    matmul_before = matmul_flops_per_s()
    pairs = build_corpus(config.per_prompt, config.seed)
    model, tokenizer, log = pretrain(pairs, config)
    held_out = build_corpus(4, config.seed + 1, split="test")
    log["val_loss"] = eval_loss(model, pack(tokenizer, held_out), model.config.n_positions)
    log.update(gold_report(model, tokenizer, config.seed))
    # the better of two measurements (before and after training): the machine may be shared
    log["matmul_flops_per_s"] = max(matmul_before, matmul_flops_per_s())
    log["implied_over_matmul"] = log["implied_flops_per_s"] / log["matmul_flops_per_s"]
    log["total_seconds"] = time.perf_counter() - start
    log.update(config=asdict(config), corpus_pairs=len(pairs), threads=torch.get_num_threads(),
               torch=torch.__version__, vocab_size=len(tokenizer))
    save_policy(model, tokenizer, args.out)
    (args.out / "training_log.json").write_text(json.dumps(log, indent=1))
    print(f"saved {args.out}: {log['params']:,} parameters, {log['train_seconds']:.0f} s training "
          f"({log['total_seconds']:.0f} s in all), {log['tokens_per_s']:,.0f} tokens/s\n"
          f"loss {log['loss'][0]:.2f} -> {log['loss'][-1]:.3f}, held-out {log['val_loss']:.3f}\n"
          f"implied {log['implied_flops_per_s'] / 1e9:.1f} GFLOP/s = {log['implied_over_matmul']:.0%} of a "
          f"1024x1024 fp32 matmul ({log['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s)\n"
          f"gold reward on test prompts: policy {log['policy_gold_mean']:+.2f}, corpus {log['corpus_gold_mean']:+.2f}\n"
          f"fluency at temperature 1: {log['policy_well_formed_sentences']:.1%} of sentences well-formed, "
          f"{log['policy_ended_with_eos']:.1%} of replies end within {log['max_new_tokens']} tokens")
    for ex in log["examples"]:
        print(f"  {ex['prompt']}\n    -> {ex['response']}")
    return args.out


if __name__ == "__main__":
    main()
