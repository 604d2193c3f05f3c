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
    rewards, kl = pg.kl_shaped_rewards(scores, logprobs, ref, mask, beta=0.1)
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
    # Dr. GRPO: centred, not scaled
    torch.testing.assert_close(pg.grpo_advantages(torch.tensor([1.0, 2.0, 6.0]), k=3, scale=False),
                               torch.tensor([-2.0, -1.0, 3.0]))
    torch.testing.assert_close(pg.mean_baseline_advantages(torch.tensor([1.0, 2.0, 6.0])), torch.tensor([-2.0, -1.0, 3.0]))
    with pytest.raises(ValueError, match="multiple"):
        pg.grpo_advantages(torch.tensor([1.0, 2.0, 6.0]), k=2)


def test_k3_kl_by_hand():
    lp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -2.0]])
    # d = ref - lp = (-0.5, 0): k3 = exp(-0.5) + 0.5 - 1, and 0 where the two agree
    torch.testing.assert_close(pg.k3_kl(lp, ref), torch.tensor([[math.exp(-0.5) - 0.5, 0.0]]))
    assert (pg.k3_kl(torch.randn(4, 5), torch.randn(4, 5)) >= 0).all()


def test_token_aggregation_grpo_dr_grpo_dapo_by_hand():
    per_token = torch.tensor([[1.0, 3.0, 0.0, 0.0], [2.0, 2.0, 2.0, 6.0]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    # grpo: mean per response, then over responses: (2 + 3) / 2
    assert pg.aggregate_token_loss(per_token, mask, "grpo").item() == pytest.approx(2.5)
    # dr_grpo: sum of all tokens / (B * max_completion_length) = 16 / (2 * 8)
    assert pg.aggregate_token_loss(per_token, mask, "dr_grpo", max_completion_length=8).item() == pytest.approx(1.0)
    # dapo: sum of all tokens / number of tokens = 16 / 6
    assert pg.aggregate_token_loss(per_token, mask, "dapo").item() == pytest.approx(16 / 6)
    with pytest.raises(ValueError, match="loss_type"):
        pg.aggregate_token_loss(per_token, mask, "ppo")
    with pytest.raises(ValueError, match="loss_type"):
        pg.PGConfig(algorithm="grpo", loss_type="token_mean")


def test_grpo_loss_by_hand():
    """One group of two replies (2 and 1 tokens), advantages +1 / -1, beta = 0.5, ratio 1 (pi_old = pi)."""
    lp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -2.0], [-0.5, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    adv = torch.tensor([1.0, -1.0])
    loss, stats = pg.grpo_loss(lp, lp.detach(), ref, adv, mask, beta=0.5, loss_type="grpo")
    k3 = math.exp(-0.5) - 0.5                       # the only token where pi and pi_ref differ
    # reply 0: mean(-1 + 0.5 * k3, -1 + 0) ; reply 1: +1 ; then the mean of the two
    expected = ((-1 + 0.5 * k3 - 1) / 2 + 1) / 2
    assert loss.item() == pytest.approx(expected)
    assert stats["clipfrac"] == 0.0
    loss.backward()
    # d loss / d lp for reply 1's token: -A * ratio / |o| / G = +1 / 1 / 2; padding gets nothing
    assert lp.grad[1, 0].item() == pytest.approx(0.5) and lp.grad[1, 1].item() == 0.0
    # d/d lp of 0.5 * k3 on token (0, 0) is 0.5 * (1 - exp(d)) with d = -0.5, plus -A/(|o| G) = -1/4
    assert lp.grad[0, 0].item() == pytest.approx((-1 + 0.5 * (1 - math.exp(-0.5))) / 4)
    # outside the clip range with A > 0 the clipped term is active and sends no gradient
    lp2 = torch.tensor([[math.log(1.5)]], requires_grad=True)
    loss2, stats2 = pg.grpo_loss(lp2, torch.zeros(1, 1), lp2.detach(), torch.tensor([2.0]), torch.ones(1, 1), beta=0.0)
    assert loss2.item() == pytest.approx(-2.4) and stats2["clipfrac"] == 1.0
    loss2.backward()
    assert lp2.grad.item() == 0.0


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


def test_adaptive_kl_controller_by_hand_and_within_one_run():
    ctl = pg.AdaptiveKLController(0.1, target=5.0, horizon=500)
    # KL 6 against 5: error +0.2 (at the clip), 64 samples: beta * (1 + 0.2 * 64 / 500)
    assert ctl.update(6.0, 64) == pytest.approx(0.1 * (1 + 0.2 * 64 / 500))
    ctl = pg.AdaptiveKLController(0.1, target=5.0, horizon=500)
    assert ctl.update(4.5, 64) == pytest.approx(0.1 * (1 - 0.1 * 64 / 500))   # error -0.1, not clipped
    # a run of notebook 05's size (30 steps of 64 samples) with the KL stuck at 3x the target: beta doubles ...
    ctl = pg.AdaptiveKLController(0.1, target=2.0, horizon=pg.PGConfig().kl_horizon)
    for _ in range(30):
        ctl.update(6.0, 64)
    assert ctl.value > 0.2
    # ... and with the KL stuck at a tenth of it, beta halves
    ctl = pg.AdaptiveKLController(0.1, target=2.0, horizon=pg.PGConfig().kl_horizon)
    for _ in range(30):
        ctl.update(0.2, 64)
    assert ctl.value < 0.05
    with pytest.raises(ValueError, match="target"):
        pg.AdaptiveKLController(0.1, target=0.0)


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="algorithm"):
        pg.PGConfig(algorithm="a2c")
    with pytest.raises(ValueError, match="samples_per_prompt"):
        pg.PGConfig(algorithm="rloo", samples_per_prompt=1)
    with pytest.raises(ValueError, match="beta"):
        pg.PGConfig(beta=-0.1)
    with pytest.raises(ValueError, match="target_kl"):
        pg.PGConfig(target_kl=0.0)
    with pytest.raises(ValueError, match="num_layers_unfrozen"):
        pg.PGConfig(num_layers_unfrozen=-1)


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

    return models.trainable_copy(policy)


@pytest.mark.parametrize("algorithm, lr, unfrozen", [("rloo", 1.5e-4, None), ("ppo", 3e-4, 2), ("rloo", 6e-4, 2)])
def test_short_run_raises_gold_reward_and_beats_the_reference(setup, algorithm, lr, unfrozen):
    """RLOO / PPO against the gold reward: reward rises, the tuned policy wins most comparisons, KL stays bounded;
    also RLOO and PPO with only the top two blocks trained, at the notebooks' larger steps."""
    from rlhf_lab import evaluation, models

    policy, tokenizer, train_texts, test_texts = setup
    ref_model = models.frozen_copy(policy)
    model = _fresh(policy)
    config = pg.PGConfig(algorithm=algorithm, steps=16, prompts_per_step=8, samples_per_prompt=4,
                         lr=lr, beta=0.1, seed=0, ppo_epochs=2, num_layers_unfrozen=unfrozen)
    log = pg.train(model, ref_model, tokenizer, evaluation.gold_reward_fn, train_texts, config,
                   gold_fn=evaluation.gold_reward_fn, progress=False)
    gold = [r["gold_reward"] for r in log]
    assert sum(gold[-4:]) / 4 > sum(gold[:4]) / 4 + 0.2, gold
    result = evaluation.compare(model, ref_model, tokenizer, test_texts, samples_per_prompt=2, seed=1)
    kl = evaluation.kl_to_reference(model, ref_model, tokenizer, test_texts, seed=1)
    assert result.gold_a > result.gold_b + 0.3, (result.gold_a, result.gold_b)   # held out, it reads better ...
    assert result.win_rate >= 0.55, result.win_rate                            # ... in most head-to-heads
    assert kl <= 15.0, kl
    if algorithm == "ppo":
        assert all("clipfrac" in r and "value_loss" in r for r in log)


def test_freeze_bottom_layers_keeps_the_top_blocks_and_the_final_norm_trainable(setup):
    from rlhf_lab import models

    policy, *_ = setup
    n_blocks = len(models.decoder_blocks(policy))
    assert n_blocks == policy.config.n_layer == 4

    def trainable(k):
        model = _fresh(policy)
        returned = models.freeze_bottom_layers(model, k)
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        assert {id(p) for p in returned} == {id(p) for n, p in model.named_parameters() if n in names}
        return names

    top2 = trainable(2)
    assert top2 and all(n.startswith(("transformer.h.2.", "transformer.h.3.", "transformer.ln_f.")) for n in top2)
    assert any(n.startswith("transformer.h.2.") for n in top2) and "transformer.ln_f.weight" in top2
    assert "transformer.wte.weight" not in top2          # the embeddings, and the output layer tied to them, stay
    tied = _fresh(policy)
    assert tied.lm_head.weight is tied.transformer.wte.weight   # so the output layer is frozen with them
    assert trainable(0) == {"transformer.ln_f.weight", "transformer.ln_f.bias"}
    assert trainable(n_blocks) == {n for n, _ in policy.named_parameters()} - {"transformer.wte.weight",
                                                                              "transformer.wpe.weight"}
    for bad in (-1, n_blocks + 1):
        with pytest.raises(ValueError, match="num_layers_unfrozen"):
            models.freeze_bottom_layers(_fresh(policy), bad)


def test_train_with_num_layers_unfrozen_moves_only_the_top_blocks(setup):
    from rlhf_lab import evaluation, models

    policy, tokenizer, train_texts, _ = setup
    model = _fresh(policy)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = pg.PGConfig(steps=2, prompts_per_step=4, samples_per_prompt=4, lr=6e-4, num_layers_unfrozen=2, seed=0)
    pg.train(model, models.frozen_copy(policy), tokenizer, evaluation.gold_reward_fn, train_texts, config, progress=False)
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        if name.startswith(("transformer.h.2.", "transformer.h.3.")) and name.endswith("weight"):
            assert moved, name
        if name.startswith(("transformer.wte", "transformer.wpe", "transformer.h.0.", "transformer.h.1.")):
            assert not moved, name
            assert not p.requires_grad, name


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
    """Notebook 05's beta = 0 run at half its batch (its learning rate and steps, every parameter trained): the
    proxy reward rises while gold falls from its peak, and at the end the proxy rates the change a point or more
    better than gold does. Seeds 0, 1 and 2 gained 0.6-1.0 in proxy, lost 1.5-3.4 in gold from its peak and ended
    2.1-3.8 points over gold. (At 1e-3 the half batch first breaks the model, and whether the proxy then climbed
    back above its start depended on float rounding: seed 0 gained 0.6 or 0.2.)"""
    from rlhf_lab import evaluation, models
    from rlhf_lab import reward_model as rm

    policy, tokenizer, train_texts, _ = setup
    reward_net, reward_tokenizer = rm.default_reward_model(progress=False)
    model = _fresh(policy)
    config = pg.PGConfig(algorithm="rloo", steps=30, prompts_per_step=8, samples_per_prompt=4, lr=5e-4,
                         beta=0.0, seed=0)   # ~14 s
    log = pg.train(model, models.frozen_copy(policy), tokenizer,
                   lambda p, r: rm.score(reward_net, reward_tokenizer, p, r), train_texts, config,
                   gold_fn=evaluation.gold_reward_fn, progress=False)
    proxy = _smoothed([r["proxy_reward"] for r in log])
    gold = _smoothed([r["gold_reward"] for r in log])
    gain = max(proxy) - proxy[0]
    assert gain > 0.5                                        # the reward model is fooled ...
    assert gold[-1] <= max(gold) - 1.0                       # ... while what people prefer has fallen from its peak
    assert proxy[-1] - proxy[0] > gold[-1] - gold[0] + 1.0   # at the end the proxy overrates the change


# ------------------------------------------------------------------- the steps notebooks 05 and 06 write inline
def _notebook_function(notebook: str, name: str, env: dict):
    """The function ``name`` as a course notebook defines it in one of its cells, defined in ``env``."""
    import ast
    import json

    from rlhf_lab import course

    for c in json.loads((course.NOTEBOOKS / notebook).read_text())["cells"]:
        source = "".join(c["source"])
        if c["cell_type"] != "code" or f"def {name}(" not in source:
            continue
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                exec(compile(ast.get_source_segment(source, node), notebook, "exec"), env)
                return env[name]
    raise AssertionError(f"{notebook} defines no function {name}")


@pytest.mark.parametrize("unfrozen", [None, 2])
def test_notebook_05s_rloo_step_equals_one_step_of_train(setup, unfrozen):
    """Notebook 05's inline ``rloo_step``, run as the notebook defines it, against one step of ``pg.train``: every
    parameter trained, and only the top two blocks (the notebook's setting: the inline model frozen by hand)."""
    import random

    from rlhf_lab import evaluation, models
    from rlhf_lab.generation import SampleConfig, response_logprobs, sample

    policy, tokenizer, train_texts, _ = setup
    ref_model = models.frozen_copy(policy)
    config = pg.PGConfig(steps=1, prompts_per_step=4, samples_per_prompt=4, seed=3, num_layers_unfrozen=unfrozen,
                         lr=1.5e-4 if unfrozen is None else 6e-4)
    env = {"torch": torch, "pg": pg, "sample": sample, "SampleConfig": SampleConfig, "response_logprobs": response_logprobs,
           "tokenizer": tokenizer, "ref_model": ref_model, "train_texts": train_texts, "proxy_reward": evaluation.gold_reward_fn,
           "samples_per_prompt": config.samples_per_prompt, "prompts_per_step": config.prompts_per_step,
           "max_new_tokens": config.max_new_tokens, "beta": config.beta}
    rloo_step = _notebook_function("05_policy_gradient.ipynb", "rloo_step", env)
    by_package = _fresh(policy)
    pg.train(by_package, ref_model, tokenizer, evaluation.gold_reward_fn, train_texts, config, progress=False)
    inline = _fresh(policy).eval()
    if unfrozen is not None:
        models.freeze_bottom_layers(inline, unfrozen)
    optimizer = torch.optim.AdamW([p for p in inline.parameters() if p.requires_grad], lr=config.lr, weight_decay=0.0)
    rloo_step(inline, optimizer, random.Random(config.seed), torch.Generator().manual_seed(config.seed))
    moved = max((a - b).abs().max().item() for a, b in zip(by_package.parameters(), policy.parameters()))
    gap = max((a - b).abs().max().item() for a, b in zip(by_package.parameters(), inline.parameters()))
    assert moved > 0.5 * config.lr and gap < 1e-3 * config.lr, (moved, gap)


@pytest.mark.parametrize("stop_kl", [0.05, 1e-9])
def test_notebook_06s_ppo_batch_equals_ppo_update(setup, stop_kl):
    """Notebook 06's inline ``ppo_batch`` against ``pg.ppo_update``: same start, same samples, same minibatch
    order, so the same parameters, value head and passes run (``stop_kl=1e-9`` forces the early stop)."""
    from rlhf_lab import evaluation
    from rlhf_lab.generation import SampleConfig, response_logprobs, sample

    policy, tokenizer, train_texts, _ = setup
    ppo_batch = _notebook_function("06_ppo.ipynb", "ppo_batch", {"torch": torch, "pg": pg})
    cfg = pg.PGConfig(algorithm="ppo", lr=5e-4, ppo_epochs=3, stop_kl=stop_kl)
    prompts = [p for p in train_texts[:4] for _ in range(4)]
    samples = sample(policy, tokenizer, prompts, SampleConfig(max_new_tokens=cfg.max_new_tokens), torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = response_logprobs(policy, samples.prompt_ids, samples.prompt_mask, samples.response_ids, samples.response_mask)
    scores = evaluation.gold_reward_fn(prompts, samples.texts)
    rewards, _ = pg.kl_shaped_rewards(torch.as_tensor(scores), samples.logprobs, ref - 0.05, samples.response_mask.float(), 0.1)
    runs = []
    for update in (pg.ppo_update, ppo_batch):
        model = _fresh(policy).eval()
        head = pg.ValueHead(model.config.hidden_size)
        optimizer = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=cfg.lr, weight_decay=0.0)
        out = update(model, head, optimizer, samples, rewards, cfg, torch.Generator().manual_seed(1))
        runs.append((model, head, out["epochs"] if isinstance(out, dict) else out))
    (a, head_a, epochs_a), (b, head_b, epochs_b) = runs
    assert epochs_a == epochs_b >= 1
    if stop_kl < 1e-6:
        assert epochs_a == 1
    for x, y in zip(list(a.parameters()) + list(head_a.parameters()), list(b.parameters()) + list(head_b.parameters())):
        torch.testing.assert_close(x, y, atol=1e-7, rtol=1e-5)
    assert max((x - y).abs().max().item() for x, y in zip(a.parameters(), policy.parameters())) > 1e-4


def test_ppo_minibatches_are_reshuffled_every_epoch_and_every_step(setup, monkeypatch):
    from rlhf_lab import evaluation, models

    policy, tokenizer, train_texts, _ = setup
    orders, randperm = [], torch.randperm

    def recording(n, *args, **kwargs):
        out = randperm(n, *args, **kwargs)
        orders.append(tuple(out.tolist()))
        return out

    monkeypatch.setattr(torch, "randperm", recording)
    config = pg.PGConfig(algorithm="ppo", steps=2, prompts_per_step=4, samples_per_prompt=2, ppo_epochs=2,
                         stop_kl=1e9, max_new_tokens=8, missing_eos_penalty=None)
    pg.train(_fresh(policy), models.frozen_copy(policy), tokenizer, evaluation.gold_reward_fn, train_texts, config,
             progress=False)
    assert len(orders) == 4 and len(set(orders)) == 4, orders


def test_adaptive_beta_moves_within_a_run(setup):
    from rlhf_lab import evaluation, models

    policy, tokenizer, train_texts, _ = setup
    config = pg.PGConfig(steps=3, prompts_per_step=4, samples_per_prompt=2, max_new_tokens=8, target_kl=50.0,
                         kl_horizon=20, missing_eos_penalty=None)
    log = pg.train(_fresh(policy), models.frozen_copy(policy), tokenizer, evaluation.gold_reward_fn, train_texts, config,
                   progress=False)
    betas = [r["beta"] for r in log]
    # the KL (a few nats at most) sits far below the target: beta falls by the clipped 20 % x 8 samples / 20 each step
    assert betas[0] == 0.1
    for before, after in zip(betas, betas[1:]):
        assert after == pytest.approx(before * (1 - 0.2 * 8 / 20))


def test_a_nan_in_ppo_names_the_training_step(setup):
    from rlhf_lab import models

    policy, tokenizer, train_texts, _ = setup
    calls = []

    def reward_that_breaks(prompts, responses):
        calls.append(1)
        return torch.full((len(prompts),), float("nan") if len(calls) > 1 else 0.0)

    with pytest.raises(FloatingPointError, match="step 1"):
        pg.train(_fresh(policy), models.frozen_copy(policy), tokenizer, reward_that_breaks, train_texts,
                 pg.PGConfig(algorithm="ppo", steps=3, prompts_per_step=2, samples_per_prompt=2, max_new_tokens=8,
                             missing_eos_penalty=None), progress=False)


def test_grpo_trains_with_each_token_aggregation(setup):
    from rlhf_lab import evaluation, models

    policy, tokenizer, train_texts, _ = setup
    for loss_type in pg.LOSS_TYPES:
        log = pg.train(_fresh(policy), models.frozen_copy(policy), tokenizer, evaluation.gold_reward_fn, train_texts,
                       pg.PGConfig(algorithm="grpo", steps=2, prompts_per_step=2, samples_per_prompt=2, max_new_tokens=8,
                                   loss_type=loss_type), progress=False)
        assert all(math.isfinite(r["loss"]) and "k3_kl" in r for r in log)
