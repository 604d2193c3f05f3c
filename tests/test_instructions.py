"""Verifiable instructions (rlhf_lab/instructions.py): prompts carry them, checkers pass and fail what they should,
the sloppy checker has its loophole, the corpus follows them at the rate asked, and the shipped instruction
policy follows them only some of the time while staying fluent (notebook 11)."""
from __future__ import annotations

import random

import pytest
import torch

from rlhf_lab import evaluation, instructions as ins, policy_gradient as pg, world
from rlhf_lab.phrasebook import INSTRUCTIONS


@pytest.fixture(scope="module")
def prompts():
    train, test = world.split_prompts(world.load_prompts())
    return train, test


def _prompt(prompts, name: str, i: int = 3) -> world.Prompt:
    return world.with_instruction(prompts[1][i], name)


# ----------------------------------------------------------------------------- prompts with an instruction
def test_an_instruction_rides_on_the_prompt_and_changes_nothing_else(prompts):
    for base in prompts[1][:20]:
        for name, sentence in INSTRUCTIONS.items():
            p = world.with_instruction(base, name)
            assert p.text == f"{base.text} {sentence}" and p.instruction == name
            assert (p.topic, p.kind, p.asks) == (base.topic, base.kind, base.asks)
            assert world.strip_instruction(p.text) == (base.text, name)
            assert world.topic_of(p.text) == base.topic
            reply = "Start small and build up slowly. Good luck!"
            assert world.gold_reward(p, reply) == world.gold_reward(base, reply)    # gold reads the question only
        assert base.instruction is None and world.strip_instruction(base.text) == (base.text, None)


def test_bad_instructions_are_refused(prompts):
    with pytest.raises(ValueError, match="unknown instruction 'shout'"):
        world.with_instruction(prompts[1][0], "shout")
    p = world.with_instruction(prompts[1][0], "please")
    with pytest.raises(ValueError, match="already carries the instruction 'please'"):
        world.with_instruction(p, "good_luck")
    with pytest.raises(ValueError, match="carries no instruction"):
        ins.check(prompts[1][0], "Hi!")
    with pytest.raises(ValueError, match="2 prompts but 1 replies"):
        ins.checker_reward([p, p], ["Hi!"])


# ----------------------------------------------------------------------------- checkers
CASES = {   # instruction: (replies the strict checker passes, replies it fails)
    "one_sentence": (["Start small and build up slowly.", "Good luck!"],
                     ["Hi! Start small and build up slowly.", "Start small and build up slowly", "",
                      "Start small and bulid up slowly."]),
    "start_hi": (["Hi! Start small and build up slowly.", "Hi! Good luck!"],
                 ["Hello! Start small and build up slowly.", "Start small. Hi!",
                  "Hi! Hi! Start small and build up slowly.", "Hi! Start small and"]),
    "good_luck": (["Start small and build up slowly. Good luck!", "Good luck!"],
                  ["Good luck! Start small and build up slowly.", "Good luck with your budget!",
                   "Start small and build up slowly. Good luck! Good luck!", "Start small and bulid up slowly. Good luck!"]),
    "please": (["Please let me know how it goes.", "Start small and build up slowly. Please let me know how it goes."],
               ["Start small and build up slowly.", "Pleased to help.", "Please let me know how it goes. Please let me know how it goes.",
                "Please let me knwo how it goes."]),
}


@pytest.mark.parametrize("name", list(INSTRUCTIONS))
def test_each_checker_passes_and_fails_what_it_should(prompts, name):
    assert set(CASES) == set(INSTRUCTIONS)
    p = _prompt(prompts, name)
    passes, fails = CASES[name]
    assert [ins.check(p, r) for r in passes] == [True] * len(passes)
    assert [ins.check(p, r) for r in fails] == [False] * len(fails)
    assert ins.check(p.text, passes[0])                       # a prompt's text works as well as the Prompt


def test_the_sloppy_checker_has_the_loophole_the_strict_one_closes(prompts):
    loopholes = {"good_luck": ["Start small and build up slowly. Good luck! Good luck! Good luck!",
                               "Start small and bulid up slowly. Good luck!"],
                 "start_hi": ["Hi! Hi! Start small and build up slowly.", "Hi! Start small and bulid up slowly."],
                 "please": ["Please let me know how it goes. Please let me know how it goes."],
                 "one_sentence": ["Start small and bulid up slowly."]}
    for name, replies in loopholes.items():
        p = _prompt(prompts, name)
        for r in replies:
            assert ins.check(p, r, strict=False) and not ins.check(p, r), (name, r)
            assert ins.CHECKERS[name](r) and not ins.is_clean(p, r)
    # and where the literal test fails, the strict checker fails too
    p = _prompt(prompts, "good_luck")
    reply = "Good luck! Start small and build up slowly."
    assert not ins.check(p, reply, strict=False) and not ins.check(p, reply)


def test_checker_reward_is_a_zero_one_tensor_and_pass_rates_count_by_instruction(prompts):
    ps = [_prompt(prompts, "good_luck"), _prompt(prompts, "good_luck"), _prompt(prompts, "please")]
    replies = ["Start small and build up slowly. Good luck!", "Good luck! Good luck!", "Start small and build up slowly."]
    r = ins.checker_reward(ps, replies)
    assert r.dtype == torch.float32 and r.shape == (3,) and r.tolist() == [1.0, 0.0, 0.0]
    assert ins.checker_reward(ps, replies, strict=False).tolist() == [1.0, 1.0, 0.0]
    assert ins.pass_rates(ps, replies) == {"good_luck": 0.5, "please": 0.0, "all": 1 / 3}
    assert ins.pass_rates(ps, replies, strict=False)["good_luck"] == 1.0
    assert len(ins.instructed_prompts(prompts[1], ["please", "start_hi"])) == 2 * len(prompts[1])


# ----------------------------------------------------------------------------- the corpus
def test_follow_always_follows_and_the_corpus_follows_at_the_rate_asked(prompts):
    rng = random.Random(0)
    for p in ins.instructed_prompts(prompts[0][:10]):
        for _ in range(3):
            reply = ins.follow(p, rng)
            assert ins.check(p, reply) and world.read_reply(p, reply).malformed == 0
    few = prompts[0][:12]
    rates = {}
    for follow_rate in (0.0, 0.5, 1.0):
        pairs = ins.instruction_corpus(few, per_prompt=6, follow_rate=follow_rate, seed=1)
        assert len(pairs) == len(few) * len(INSTRUCTIONS) * 6
        rates[follow_rate] = sum(ins.check(p, r) for p, r in pairs) / len(pairs)
    assert rates[1.0] == 1.0
    assert 0.05 < rates[0.0] < 0.4 < rates[0.5] < 0.9          # by chance only, then about half on top
    with pytest.raises(ValueError, match="follow_rate"):
        ins.instruction_corpus(few, 2, 1.5, 0)


def test_the_shipped_instruction_policy_follows_sometimes_and_stays_fluent(prompts, one_thread):
    """Issue 17: the reference passes 20-60 % at temperature 1, with the world issue's fluency (>= 95 % of its
    sentences well-formed, >= 97 % of replies ended within max_new_tokens), on held-out prompts."""
    from rlhf_lab import models
    from rlhf_lab.generation import SampleConfig, sample

    if not (ins.INSTRUCT_POLICY / "config.json").exists():
        pytest.skip(f"no instruction policy at {ins.INSTRUCT_POLICY}: build it with python -m rlhf_lab.instructions")
    policy, tokenizer = models.load_policy(ins.INSTRUCT_POLICY)
    ps = [p for p in ins.instructed_prompts(prompts[1]) for _ in range(2)]
    generator, texts, ended = torch.Generator().manual_seed(5), [], []
    for _ in range(3):       # three draws (about 1,100 replies): one draw's share of well-formed sentences varied
        s = sample(policy, tokenizer, [p.text for p in ps], SampleConfig(), generator)   # 94.7-96.6 %
        texts += s.texts
        ended += s.ended.tolist()
    rates = ins.pass_rates(ps * 3, texts)
    fluency = world.fluency(texts, ended)
    assert 0.2 <= rates["all"] <= 0.6, rates
    assert all(0.15 <= v <= 0.7 for v in rates.values()), rates
    assert fluency["well_formed"] >= 0.95 and fluency["ended"] >= 0.97, fluency


def test_building_the_instruction_policy_runs_and_saves(tmp_path, prompts, one_thread):
    log = ins.build_instruct_policy(tmp_path / "p", steps=2, per_prompt=1, plain_per_prompt=1, progress=False)
    assert (tmp_path / "p" / "model.safetensors").exists() and (tmp_path / "p" / "training_log.json").exists()
    assert set(log["pass_rates"]) == set(INSTRUCTIONS) | {"all"} and len(log["loss"]) == 2


# ----------------------------------------------------------------------------- pass@k, flat groups, GRPO's zero loss
def test_pass_at_k_is_the_chance_that_one_of_k_draws_without_replacement_passes():
    import itertools

    for n in range(1, 7):
        for c in range(n + 1):
            outcomes = [1] * c + [0] * (n - c)
            for k in range(1, n + 1):
                draws = list(itertools.combinations(range(n), k))
                exact = sum(any(outcomes[i] for i in d) for d in draws) / len(draws)
                assert evaluation.pass_at_k(n, c, k) == pytest.approx(exact)
    for bad in [(4, 5, 1), (4, 1, 0), (4, 1, 5), (4, -1, 1)]:
        with pytest.raises(ValueError, match="pass@k"):
            evaluation.pass_at_k(*bad)


def test_grpo_loss_with_grpo_aggregation_reads_zero_on_policy_while_its_gradient_does_not():
    torch.manual_seed(0)
    k, n = 4, 3
    logits = torch.randn(n * k, 6, requires_grad=True)
    logprobs = torch.log_softmax(logits, -1)[:, :5]         # any per-token log-probs with gradients: (B, T)
    mask = torch.ones(n * k, 5)
    mask[1, 3:] = 0
    mask[6, 1:] = 0
    scores = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0])
    adv = pg.grpo_advantages(scores, k)
    loss, _ = pg.grpo_loss(logprobs, logprobs.detach(), logprobs.detach(), adv, mask, beta=0.0, loss_type="grpo")
    loss.backward()
    assert abs(loss.item()) < 1e-6 and logits.grad.norm() > 1e-2
    assert adv.view(-1, k)[1].abs().max() == 0                # an all-fail group: no advantage, no signal


def test_train_logs_flat_groups_and_the_gradient_norm(tiny):
    policy, tokenizer = tiny
    import copy

    from rlhf_lab import models

    model = copy.deepcopy(policy)
    ref = models.frozen_copy(policy)
    train, _ = world.split_prompts(world.load_prompts())
    texts = [p.text for p in ins.instructed_prompts(train[:20], ["good_luck"])]
    always = lambda prompts, replies: torch.ones(len(replies))                       # every group is flat
    cfg = pg.PGConfig(algorithm="grpo", beta=0.0, steps=2, prompts_per_step=4, samples_per_prompt=2,
                      max_new_tokens=12, missing_eos_penalty=None)
    log = pg.train(model, ref, tokenizer, always, texts, cfg, progress=False)
    assert all(r["flat_groups"] == 1.0 and r["grad_norm"] == 0.0 for r in log)
    parity = lambda prompts, replies: torch.tensor([float(len(r) % 2) for r in replies])   # some groups differ
    log = pg.train(model, ref, tokenizer, parity, texts, pg.PGConfig(**{**cfg.__dict__, "steps": 3}), progress=False)
    assert all(0.0 <= r["flat_groups"] <= 1.0 and r["grad_norm"] >= 0.0 for r in log)
    assert any(r["flat_groups"] < 1.0 and r["grad_norm"] > 0.0 for r in log)
