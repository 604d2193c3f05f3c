"""Policy-gradient pieces against hand-computed values, and a short run that must learn."""
import math

import pytest
import torch

from rlhf_lab import policy_gradient as pg


def test_kl_shaped_rewards_by_hand():
    scores = torch.tensor([1.0, 2.0])
    logprobs = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, -9.0], [-0.5, -9.0, -9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    rewards, kl = pg.kl_shaped_rewards(scores, logprobs, ref, mask, kl_coef=0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.5, -1.0, 0.0], [0.0, 0.0, 0.0]]))
    # -0.1 * kl on every token, the score added on the last real token, nothing on padding
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.1 + 1.0, 0.0], [2.0, 0.0, 0.0]]))
    torch.testing.assert_close(rewards.sum(1), scores - 0.1 * kl.sum(1))


def test_rloo_baseline_by_hand():
    returns = torch.tensor([1.0, 2.0, 6.0, 4.0, 4.0, 1.0])
    adv = pg.rloo_advantages(returns, k=3)
    # sample 0: 1 - (2 + 6) / 2 = -3;  sample 1: 2 - (1 + 6) / 2 = -1.5;  sample 2: 6 - 1.5 = 4.5
    torch.testing.assert_close(adv, torch.tensor([-3.0, -1.5, 4.5, 1.5, 1.5, -3.0]))
    with pytest.raises(ValueError, match="k >= 2"):
        pg.rloo_advantages(returns, k=1)
    with pytest.raises(ValueError, match="multiple"):
        pg.rloo_advantages(returns, k=4)


def test_grpo_and_mean_baseline_by_hand():
    adv = pg.grpo_advantages(torch.tensor([1.0, 2.0, 6.0]), k=3, eps=0.0)
    s = math.sqrt(7.0)  # unbiased std of (1, 2, 6) around the mean 3
    torch.testing.assert_close(adv, torch.tensor([-2 / s, -1 / s, 3 / s]))
    torch.testing.assert_close(pg.mean_baseline_advantages(torch.tensor([1.0, 2.0, 6.0])), torch.tensor([-2.0, -1.0, 3.0]))


def test_gae_on_a_short_trajectory_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.6, 0.8, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])            # the 4th column is padding and must not matter
    adv, ret = pg.gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # deltas: t2 = 1 - 0.8 = 0.2, t1 = 0.8 - 0.6 = 0.2, t0 = 0.6 - 0.5 = 0.1
    # A2 = 0.2, A1 = 0.2 + 0.5 * 0.2 = 0.3, A0 = 0.1 + 0.5 * 0.3 = 0.25
    torch.testing.assert_close(adv, torch.tensor([[0.25, 0.3, 0.2, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.75, 0.9, 1.0, 0.0]]))
    # lambda = 1: A_t is the discounted return minus V_t
    adv, _ = pg.gae(rewards, values, mask, gamma=0.9, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.81 - 0.5, 0.9 - 0.6, 1.0 - 0.8, 0.0]]))


@pytest.mark.parametrize("ratio, advantage, loss, clipped", [
    (1.1, 2.0, -2.2, 0.0),    # inside the clip range: plain ratio * A
    (1.5, 2.0, -2.4, 1.0),    # above 1 + eps with A > 0: clipped at 1.2 * A
    (0.5, -1.0, 0.8, 1.0),    # below 1 - eps with A < 0: clipped at 0.8 * A
    (0.5, 1.0, -0.5, 0.0),    # below 1 - eps with A > 0: the unclipped term is the smaller one
])
def test_clipped_objective_inside_and_outside_the_range(ratio, advantage, loss, clipped):
    old = torch.zeros(1, 1)
    logprobs = torch.full((1, 1), math.log(ratio), requires_grad=True)
    value, stats = pg.ppo_policy_loss(logprobs, old, torch.tensor([[advantage]]), torch.ones(1, 1), clip_range=0.2)
    assert value.item() == pytest.approx(loss)
    assert stats["clipfrac"] == clipped
    value.backward()
    if clipped:  # a clipped token sends no gradient
        assert logprobs.grad.abs().item() == 0.0
    else:        # d(-ratio * A)/d logprob = -ratio * A
        assert logprobs.grad.item() == pytest.approx(-ratio * advantage)


def test_clipped_value_loss_by_hand():
    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0]]), torch.tensor([[2.0, 0.3]])
    # token 0: unclipped (1 - 2)^2 = 1, clipped V = 0.7 -> (0.7 - 2)^2 = 1.69 -> max 1.69
    # token 1: both (0 - 0.3)^2 = 0.09
    loss = pg.ppo_value_loss(values, old, returns, torch.ones(1, 2), clip_range_value=0.2)
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.09) / 2)


def test_whiten_and_masked_mean():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    assert pg.masked_mean(x, mask).item() == pytest.approx(2.5)
    w = pg.whiten(x, mask)
    assert pg.masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert pg.masked_mean(w ** 2, mask).item() == pytest.approx(1.0, abs=1e-4)
    assert w[:, 2].abs().sum() == 0


def test_adaptive_kl_controller_moves_beta_towards_the_target():
    ctl = pg.AdaptiveKLController(0.1, target=5.0, horizon=10)
    assert ctl.update(10.0, 1) > 0.1          # KL too high: stronger penalty
    ctl = pg.AdaptiveKLController(0.1, target=5.0, horizon=10)
    assert ctl.update(1.0, 1) < 0.1           # KL too low: weaker penalty


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="algorithm"):
        pg.PGConfig(algorithm="a2c")
    with pytest.raises(ValueError, match="samples_per_prompt"):
        pg.PGConfig(algorithm="rloo", samples_per_prompt=1)


# ------------------------------------------------------------------- missing EOS
def test_missing_eos_penalty_replaces_the_score_and_hides_the_reply_from_the_reward_model():
    seen = []

    def reward(prompts, responses):
        seen.extend(responses)
        return torch.tensor([float(len(r)) for r in responses])

    texts = ["done.", "cut off at the", "also done."]
    ended = torch.tensor([True, False, True])
    scores = pg.score_responses(reward, ["p"] * 3, texts, ended, missing_eos_penalty=4.0)
    assert scores.tolist() == [5.0, -4.0, 10.0]
    assert seen == ["done.", "also done."]                  # the unfinished reply never reached the reward model
    seen.clear()
    assert pg.score_responses(reward, ["p"] * 3, texts, ended, None).tolist() == [5.0, 14.0, 10.0]
    assert seen == texts
    seen.clear()
    assert pg.score_responses(reward, ["p"] * 2, texts[1:2] * 2, torch.tensor([False, False]), 2.0).tolist() == [-2.0, -2.0]
    assert seen == []                                       # nothing ended: the reward model is not called
    with pytest.raises(ValueError, match="missing_eos_penalty"):
        pg.PGConfig(missing_eos_penalty=-1.0)
    assert pg.PGConfig().missing_eos_penalty > 0            # on by default


def test_train_penalises_replies_that_hit_the_token_limit(setup):
    """With a cap far below the replies' length no reply ends: every score is the penalty, and gold knows."""
    from rlhf_lab import evaluation, models

    policy, tokenizer, train_texts, _ = setup
    calls = []
    config = pg.PGConfig(steps=1, prompts_per_step=2, samples_per_prompt=2, max_new_tokens=3, missing_eos_penalty=5.0)
    log = pg.train(_fresh(policy), models.frozen_copy(policy), tokenizer, lambda p, r: calls.append(r) or torch.zeros(len(r)),
                   train_texts, config, gold_fn=evaluation.gold_reward_fn, progress=False)
    assert calls == [] and log[0]["proxy_reward"] == -5.0 and log[0]["ended"] == 0.0
    assert log[0]["gold_reward"] < -2                       # unfinished (and short) to the gold reward too


# ------------------------------------------------------------------- learning on the real tiny policy
def _smoothed(xs, w=5):
    return [sum(xs[i:i + w]) / w for i in range(len(xs) - w + 1)]


@pytest.fixture(scope="module")
def setup():
    from rlhf_lab import models, world

    torch.manual_seed(0)
    policy, tokenizer = models.load_policy()
    train, test = world.split_prompts(world.load_prompts())
    return policy, tokenizer, [p.text for p in train], [p.text for p in test]


def _fresh(policy):
    from rlhf_lab import models

    model = models.frozen_copy(policy)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


@pytest.mark.parametrize("algorithm", ["rloo", "ppo"])
def test_short_run_raises_gold_reward_and_beats_the_reference(setup, algorithm):
    """RLOO / PPO against the gold reward: reward rises, the tuned policy wins most comparisons, KL stays bounded."""
    from rlhf_lab import evaluation, models

    policy, tokenizer, train_texts, test_texts = setup
    reference = models.frozen_copy(policy)
    model = _fresh(policy)
    config = pg.PGConfig(algorithm=algorithm, steps=16, prompts_per_step=8, samples_per_prompt=4,
                         lr=1.5e-4 if algorithm == "rloo" else 5e-5, kl_coef=0.1, seed=0,
                         ppo_epochs=2)
    log = pg.train(model, reference, tokenizer, evaluation.gold_reward_fn, train_texts, config,
                   gold_fn=evaluation.gold_reward_fn, progress=False)
    gold = [r["gold_reward"] for r in log]
    assert sum(gold[-4:]) / 4 > sum(gold[:4]) / 4 + 0.3
    result = evaluation.compare(model, reference, tokenizer, test_texts, samples_per_prompt=2, seed=1)
    kl = evaluation.kl_to_reference(model, reference, tokenizer, test_texts, seed=1)
    assert result.gold_a > result.gold_b + 0.3, (result.gold_a, result.gold_b)   # held out, it reads better ...
    assert result.win_rate >= 0.55, result.win_rate                            # ... in most head-to-heads
    assert kl <= 15.0, kl
    if algorithm == "ppo":
        assert all("clipfrac" in r and "value_loss" in r for r in log)


def test_training_stops_with_a_clear_message_on_nan(setup):
    from rlhf_lab import models

    policy, tokenizer, train_texts, _ = setup
    model = _fresh(policy)

    def broken_reward(prompts, responses):
        return torch.full((len(prompts),), float("nan"))

    with pytest.raises(FloatingPointError, match="step 0"):
        pg.train(model, models.frozen_copy(policy), tokenizer, broken_reward, train_texts,
                 pg.PGConfig(steps=2, prompts_per_step=2, samples_per_prompt=2), progress=False)


def test_without_kl_the_policy_hacks_the_learned_reward_model(setup):
    """Notebook 05's beta = 0 run, shortened: proxy reward ends near its maximum while gold falls below its peak."""
    from rlhf_lab import evaluation, models
    from rlhf_lab import reward_model as rm

    policy, tokenizer, train_texts, _ = setup
    reward_net, reward_tokenizer = rm.default_reward_model(progress=False)
    model = _fresh(policy)
    config = pg.PGConfig(algorithm="rloo", steps=30, prompts_per_step=8, samples_per_prompt=4, lr=1e-3,
                         kl_coef=0.0, seed=0)   # half notebook 05's batch: ~20 s
    log = pg.train(model, models.frozen_copy(policy), tokenizer,
                   lambda p, r: rm.score(reward_net, reward_tokenizer, p, r), train_texts, config,
                   gold_fn=evaluation.gold_reward_fn, progress=False)
    proxy = _smoothed([r["proxy_reward"] for r in log])
    gold = _smoothed([r["gold_reward"] for r in log])
    gain = max(proxy) - proxy[0]
    assert gain > 0.5                                        # the reward model is fooled ...
    assert proxy[-1] >= proxy[0] + 0.7 * gain                # ... and the proxy ends near its maximum
    assert gold[-1] <= max(gold) - 1.0                       # while what people prefer has fallen from its peak
