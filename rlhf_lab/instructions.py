"""Verifiable instructions: rewards a program can check (notebook 11).

A prompt can end with an instruction from ``phrasebook.INSTRUCTIONS`` ("Answer in one sentence.",
"End with 'Good luck!'", ...), in the spirit of IFEval (Zhou et al. 2023). Each has a **checker**, a few
lines that read the reply and return pass or fail: the reward of RL with verifiable rewards (RLVR), as in
DeepSeekMath's GRPO runs on maths answers or Tulu 3's instruction constraints. Nothing is learned, so there is
no reward model to over-optimise; what can still go wrong is a checker that checks less than it says.
``check(..., strict=False)`` is such a checker: the instruction's literal test alone, which a policy games
with a pile of sign-offs ("Good luck! Good luck! Good luck!").

* :func:`check`: does a reply follow its prompt's instruction? (``strict=False``: the loophole's checker)
* :func:`checker_reward`: a 0/1 ``reward_fn`` for ``policy_gradient.train``
* :func:`instruction_corpus`: (prompt, reply) pairs where instructions are followed only some of the time,
  the data the shipped instruction policy (``data/instruct-policy``) is pretrained on.

``python -m rlhf_lab.instructions`` rebuilds ``data/instruct-policy``: the shipped tiny policy
(``data/tiny-policy``) trained further on that corpus mixed with its own (about 1 min on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import torch

from rlhf_lab import world
from rlhf_lab.paths import DATA
from rlhf_lab.phrasebook import GREETINGS, INSTRUCTIONS

INSTRUCT_POLICY = DATA / "instruct-policy"


def _one_sentence(reply: str) -> bool:
    sentences, rest = world.split_sentences(reply)
    return len(sentences) == 1 and not rest


def _start_hi(reply: str) -> bool:
    return " ".join(reply.split()).startswith("Hi!")


def _good_luck(reply: str) -> bool:
    return " ".join(reply.split()).endswith("Good luck!")


def _please(reply: str) -> bool:
    return "please" in world.words(reply)


#: The literal test of each instruction: ``reply -> pass``. Short on purpose: read them.
CHECKERS: dict[str, Callable[[str], bool]] = {
    "one_sentence": _one_sentence,
    "start_hi": _start_hi,
    "good_luck": _good_luck,
    "please": _please,
}


def is_clean(prompt: world.Prompt | str, reply: str) -> bool:
    """Is ``reply`` a clean reply: not empty, finished, every sentence a sentence of the world (the phrasebook is
    a list, so a program can check it), no sentence said twice? The format half of a strict checker, as
    DeepSeek-R1 pairs a format reward with its accuracy reward (Guo et al. 2025)."""
    r = world.read_reply(prompt, reply)
    return r.n_words > 0 and not (r.malformed or r.unfinished or r.repeated)


def check(prompt: world.Prompt | str, reply: str, strict: bool = True) -> bool:
    """Does ``reply`` follow the instruction ``prompt`` ends with?

    ``strict`` (the default): the instruction's literal test (:data:`CHECKERS`) *and* a clean reply
    (:func:`is_clean`). ``strict=False``: the literal test alone, a sloppy checker: "Good luck! Good luck! Good
    luck!" ends with "Good luck!", and so does a garbled reply. A prompt without an instruction raises ``ValueError``.
    """
    text = world.prompt_text(prompt)
    name = world.strip_instruction(text)[1]
    if name is None:
        raise ValueError(f"prompt {text!r} carries no instruction; add one with world.with_instruction")
    return CHECKERS[name](reply) and (not strict or is_clean(prompt, reply))


def checker_reward(prompts: Sequence[world.Prompt | str], replies: Sequence[str], strict: bool = True
                   ) -> torch.Tensor:
    """The checker as a reward: 1.0 where the reply follows its prompt's instruction, else 0.0. Shape: (B,).

    Use it as ``reward_fn`` of ``policy_gradient.train`` (``functools.partial(checker_reward, strict=False)``
    for the sloppy checker).
    """
    if len(prompts) != len(replies):
        raise ValueError(f"{len(prompts)} prompts but {len(replies)} replies")
    return torch.tensor([float(check(p, r, strict)) for p, r in zip(prompts, replies)])


def pass_rates(prompts: Sequence[world.Prompt | str], replies: Sequence[str], strict: bool = True
               ) -> dict[str, float]:
    """The share of replies that pass, per instruction name, plus ``"all"``."""
    by: dict[str, list[bool]] = {}
    for p, r in zip(prompts, replies):
        by.setdefault(world.strip_instruction(world.prompt_text(p))[1], []).append(check(p, r, strict))
    out = {name: sum(v) / len(v) for name, v in by.items()}
    out["all"] = sum(sum(v) for v in by.values()) / sum(len(v) for v in by.values())
    return out


def instructed_prompts(prompts: Sequence[world.Prompt], names: Sequence[str] = tuple(INSTRUCTIONS)
                       ) -> list[world.Prompt]:
    """Every prompt with every instruction in ``names``: ``len(prompts) * len(names)`` prompts."""
    return [world.with_instruction(p, n) for p in prompts for n in names]


# ----------------------------------------------------------------------------- the corpus
def _without(reply: str, role: str) -> list[str]:
    """The sentences of ``reply`` less those whose phrasebook role is ``role`` (e.g. its sign-offs)."""
    g = world.grammar()
    return [s for s in world.split_sentences(reply)[0] if getattr(g.get(s), "role", None) != role]


def follow(prompt: world.Prompt, rng: random.Random, tries: int = 500) -> str:
    """A fluent reply to ``prompt`` that follows its instruction: a candidate that passes the checker (for the
    sign-off, greeting and "please" instructions, a candidate with that sentence put in its place)."""
    name = prompt.instruction
    for _ in range(tries):
        reply = world.candidate_responses(prompt, 1, rng, mistakes=False)[0]
        if name == "good_luck":            # a sign-off is rare by chance: end the candidate with it instead
            reply = " ".join(_without(reply, "closing") + ["Good luck!"])
        elif name == "start_hi":
            reply = " ".join(["Hi!"] + _without(reply, "greeting"))
        elif name == "please" and not CHECKERS["please"](reply):
            reply = " ".join(_without(reply, "closing") + ["Please let me know how it goes."])
        if check(prompt, reply):
            return reply
    raise RuntimeError(f"no candidate in {tries} follows {prompt.text!r}")


def instruction_corpus(prompts: Sequence[world.Prompt], per_prompt: int, follow_rate: float, seed: int
                       ) -> list[tuple[world.Prompt, str]]:
    """(instructed prompt, reply) pairs: every prompt with every instruction, ``per_prompt`` replies each; a
    reply follows the instruction with probability ``follow_rate`` (:func:`follow`), else it is an ordinary
    fluent candidate, which passes only by chance. A model of this corpus follows instructions sometimes."""
    if not 0 <= follow_rate <= 1:
        raise ValueError(f"follow_rate must be in [0, 1], got {follow_rate}")
    rng = random.Random(seed)
    out = []
    for p in instructed_prompts(prompts):
        for _ in range(per_prompt):
            reply = follow(p, rng) if rng.random() < follow_rate else \
                world.candidate_responses(p, 1, rng, mistakes=False)[0]
            out.append((p, reply))
    return out


# ----------------------------------------------------------------------------- the shipped instruction policy
def build_instruct_policy(out: Path = INSTRUCT_POLICY, base: Path | None = None, steps: int = 200,
                          per_prompt: int = 12, follow_rate: float = 0.5, plain_per_prompt: int = 24,
                          lr: float = 1e-3, seed: int = 0, progress: bool = True) -> dict:
    """Train the shipped policy further on :func:`instruction_corpus` mixed with plain replies (so it keeps its
    grammar), save it to ``out`` with ``save_pretrained``, and return its log (also ``out/training_log.json``):
    the loss curve and, on held-out prompts at temperature 1, pass rates, fluency and gold reward."""
    from rlhf_lab import models, pretrain
    from rlhf_lab.generation import SampleConfig, sample
    from rlhf_lab.seed import set_seed

    start = time.perf_counter()
    set_seed(seed)
    policy, tokenizer = models.load_policy(base) if base else models.load_policy()
    train, test = world.split_prompts(world.load_prompts())
    pairs = instruction_corpus(train, per_prompt, follow_rate, seed)
    pairs += world.response_corpus(train, plain_per_prompt, seed + 1)
    pairs = [(p.text, r) for p, r in pairs]
    random.Random(seed).shuffle(pairs)
    tokens = pretrain.pack(tokenizer, pairs)
    config = pretrain.PretrainConfig(steps=steps, lr=lr, warmup_steps=20, seed=seed)
    log = pretrain.train(policy, tokens, config, progress=progress)
    # held out: the test prompts with every instruction, 4 samples each, temperature 1
    prompts = [p for p in instructed_prompts(test) for _ in range(4)]
    samples = sample(policy, tokenizer, [p.text for p in prompts], SampleConfig(),
                     generator=torch.Generator().manual_seed(seed))
    ended = samples.ended.tolist()
    log.update(pass_rates=pass_rates(prompts, samples.texts), fluency=world.fluency(samples.texts, ended),
               gold_mean=sum(world.gold_reward(p, r, e) for p, r, e in zip(prompts, samples.texts, ended)) / len(prompts),
               corpus_pairs=len(pairs), corpus_tokens=len(tokens), follow_rate=follow_rate, per_prompt=per_prompt,
               plain_per_prompt=plain_per_prompt, config=asdict(config), total_seconds=time.perf_counter() - start,
               threads=torch.get_num_threads(), torch=torch.__version__,
               examples=[{"prompt": p.text, "response": r} for p, r in zip(prompts[::97], samples.texts[::97])])
    models.save_policy(policy, tokenizer, out)
    (Path(out) / "training_log.json").write_text(json.dumps(log, indent=1))
    return log


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Rebuild the instruction policy of notebook 11 (see rlhf_lab/instructions.py).")
    parser.add_argument("--out", type=Path, default=INSTRUCT_POLICY, help="checkpoint directory (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--follow-rate", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    log = build_instruct_policy(args.out, steps=args.steps, follow_rate=args.follow_rate, seed=args.seed)
    rates = ", ".join(f"{k} {v:.0%}" for k, v in log["pass_rates"].items())
    print(f"saved {args.out} in {log['total_seconds']:.0f} s; loss {log['loss'][0]:.2f} -> {log['loss'][-1]:.3f}\n"
          f"held-out pass rates at temperature 1: {rates}\n"
          f"fluency: {log['fluency']['well_formed']:.1%} of sentences well-formed, {log['fluency']['ended']:.1%} ended; "
          f"gold {log['gold_mean']:+.2f}")
    for ex in log["examples"]:
        print(f"  {ex['prompt']}\n    -> {ex['response']}")
    return args.out


if __name__ == "__main__":
    main()
