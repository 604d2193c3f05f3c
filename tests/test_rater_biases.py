"""Biased simulated raters (world.SimulatedRater), the fit of a rater's noise and biases, and pooling a panel."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from rlhf_lab import agreement, linear_reward, reward_data, world
from rlhf_lab.preferences import PreferenceRecord

PROMPTS = world.load_prompts()


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.fixture(scope="module")
def pairs():
    return world.make_pairs(PROMPTS, 60, seed=3)


def test_gold_parts_names_are_the_parts(pairs):
    prompt, a, _ = pairs[0]
    assert tuple(world.gold_reward_parts(prompt, a)) == world.GOLD_PARTS


def test_an_unbiased_rater_is_the_course_rater(pairs):
    rater = world.SimulatedRater(temperature=1.5)
    for prompt, a, b in pairs:
        diff = world.gold_reward(prompt, a) - world.gold_reward(prompt, b)
        assert rater.prob_first(prompt, a, b) == pytest.approx(world.sigmoid(diff / 1.5), abs=1e-12)


def test_each_bias_is_one_term_of_the_logit(pairs):
    plain = world.SimulatedRater(temperature=1.0)
    long_ = world.SimulatedRater(temperature=1.0, length_bias=0.2)
    first = world.SimulatedRater(temperature=1.0, position_bias=0.7)
    contrary = world.SimulatedRater(temperature=2.0, contrarian=True, length_bias=-0.1)
    for prompt, a, b in pairs[:30]:
        d_words = len(world.words(a)) - len(world.words(b))
        base = _logit(plain.prob_first(prompt, a, b)) if 0 < plain.prob_first(prompt, a, b) < 1 else None
        if base is None or abs(base) > 20:
            continue
        assert _logit(long_.prob_first(prompt, a, b)) - base == pytest.approx(0.2 * d_words, abs=1e-6)
        assert _logit(first.prob_first(prompt, a, b)) - base == pytest.approx(0.7, abs=1e-6)
        # shown the other way round, the position term changes sign relative to the taste
        assert _logit(first.prob_first(prompt, a, b)) + _logit(first.prob_first(prompt, b, a)) == pytest.approx(1.4, abs=1e-6)
        assert _logit(contrary.prob_first(prompt, a, b)) == pytest.approx(-base / 2.0 - 0.1 * d_words, abs=1e-6)


def test_taste_weights_gold_parts(pairs):
    warm = world.SimulatedRater(temperature=1.0, taste={"polite": 2.0})
    for prompt, a, _ in pairs[:20]:
        parts = world.gold_reward_parts(prompt, a)
        assert warm.utility(prompt, a) == pytest.approx(sum(parts.values()) + 2.0 * parts["polite"])
    with pytest.raises(ValueError, match="unknown gold parts"):
        world.SimulatedRater(taste={"kindness": 1.0})


def test_temperature_zero_lets_the_taste_decide_and_the_bias_break_ties(pairs):
    rater = world.SimulatedRater(temperature=0.0, position_bias=2.0)
    prompt, a, b = next((p, a, b) for p, a, b in pairs if world.gold_reward(p, a) > world.gold_reward(p, b))
    assert rater.prob_first(prompt, a, b) == 1.0 and rater.prob_first(prompt, b, a) == 0.0
    assert rater.prob_first(prompt, a, a) == pytest.approx(world.sigmoid(2.0))


def test_rate_records_which_reply_was_shown_first(pairs):
    rater = world.SimulatedRater(temperature=1.0, seed=4, position_bias=3.0)
    records = [rater.rate(p, a, b) for p, a, b in pairs]
    for record, (_, a, _) in zip(records, pairs):
        assert record.shown_first == ("chosen" if record.chosen == a else "rejected")
    # a strong position bias: the first reply wins most clicks
    assert np.mean([r.shown_first == "chosen" for r in records]) > 0.75


def test_fit_logistic_matches_sklearn_and_the_truth():
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 3))
    w_true = np.array([1.2, -0.5, 0.3])
    y = rng.random(3000) < 1 / (1 + np.exp(-x @ w_true))
    signed = np.where(y[:, None], x, -x)                 # every row as "the chosen side"
    w, se = agreement.fit_logistic(signed)
    assert np.all(np.abs(w - w_true) < 3.5 * se)
    ref = sklearn.LogisticRegression(fit_intercept=False, C=1e12, tol=1e-10, max_iter=1000).fit(x, y)
    np.testing.assert_allclose(w, ref.coef_[0], atol=1e-5)


def test_fit_slope_is_the_one_column_fit():
    rng = np.random.default_rng(1)
    d = rng.normal(size=400)
    keep = rng.random(400) < 1 / (1 + np.exp(-2.0 * d))
    diffs = np.where(keep, d, -d)
    k, se = agreement.fit_slope(diffs)
    w, se1 = agreement.fit_logistic(diffs[:, None])
    assert k == pytest.approx(w[0]) and se == pytest.approx(se1[0]) and abs(k - 2.0) < 3.5 * se


def test_fit_rater_biases_recovers_noise_and_biases():
    pairs = world.make_pairs(PROMPTS, 1500, seed=7)
    raters = [world.SimulatedRater(0.7, seed=1, name="long", length_bias=0.25),
              world.SimulatedRater(1.0, seed=2, name="first", position_bias=1.0),
              world.SimulatedRater(2.0, seed=3, name="contrary", contrarian=True)]
    records = [r.rate(p, a, b) for r in raters for p, a, b in pairs]
    fits = agreement.fit_rater_biases(records)
    truth = {"long": (1 / 0.7, 0.25, 0.0), "first": (1.0, 0.0, 1.0), "contrary": (-0.5, 0.0, 0.0)}
    for name, true in truth.items():
        f = fits[name]
        fitted = (f.slope, f.length_bias, f.position_bias)
        assert all(abs(a - b) < 3.5 * s for a, b, s in zip(fitted, true, f.se)), (name, fitted, f.se)
    assert fits["long"].length_bias > 5 * fits["long"].se[1] and fits["first"].position_bias > 5 * fits["first"].se[2]
    assert fits["contrary"].temperature == pytest.approx(1 / fits["contrary"].slope)
    unknown = [PreferenceRecord(r.prompt, r.chosen, r.rejected, rater=r.rater) for r in records[:200]]
    assert math.isnan(agreement.fit_rater_biases(unknown)["long"].position_bias)


def test_majority_vote_and_without_raters():
    p, a, b, c = "prompt", "reply a", "reply b", "reply c"
    records = [PreferenceRecord(p, a, b, rater="x"), PreferenceRecord(p, b, a, rater="y"),
               PreferenceRecord(p, a, b, rater="z"),                            # a wins 2-1 (either order)
               PreferenceRecord(p, c, b, rater="x"), PreferenceRecord(p, b, c, rater="y"),   # 1-1: dropped
               PreferenceRecord(p, c, a, rater="z", tie=True)]                  # a tie: no vote
    pooled = agreement.majority_vote(records)
    assert [(r.chosen, r.rejected, r.source) for r in pooled] == [(a, b, "majority of 3")]
    assert [r.rater for r in agreement.without_raters(records, ["y", "z"])] == ["x", "x"]


def test_rater_slopes_weight_each_raters_clicks():
    records = world.simulate_preferences(400, 1.0, seed=0)
    plain, _ = linear_reward.train_linear_reward_model(records, steps=50)
    ones, _ = linear_reward.train_linear_reward_model(records, steps=50, rater_slopes={"simulated": 1.0})
    torch.testing.assert_close(plain.weight, ones.weight)
    # a contrarian's clicks with slope -1 teach what the same clicks turned round teach with slope +1
    flipped = [PreferenceRecord(r.prompt, r.rejected, r.chosen, rater="fay") for r in records]
    negative, _ = linear_reward.train_linear_reward_model(flipped, steps=50, rater_slopes={"fay": -1.0})
    torch.testing.assert_close(negative.weight, plain.weight)
    # a rater at slope 0 teaches nothing
    zero, _ = linear_reward.train_linear_reward_model(records, steps=50, rater_slopes={"simulated": 0.0})
    assert torch.count_nonzero(zero.weight) == 0
    with pytest.raises(ValueError, match="finite"):
        linear_reward.train_linear_reward_model(records, steps=5, rater_slopes={"simulated": math.inf})


def test_simulate_comparisons_takes_a_biased_rater():
    rater = world.SimulatedRater(1.0, seed=0, name="long", length_bias=2.0)
    records = reward_data.simulate_comparisons(PROMPTS, 10, 6, rater=rater)
    assert {r.rater for r in records} == {"long"} and len(records) <= 10 * 15
    longer = np.mean([len(world.words(r.chosen)) > len(world.words(r.rejected)) for r in records
                      if len(world.words(r.chosen)) != len(world.words(r.rejected))])
    assert longer > 0.85
