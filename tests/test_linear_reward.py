"""The linear reward model (``linear_reward.py``): its features of hand-made replies, and its weights against
gold's after training on simulated clicks, near the Bayes ceiling."""
from __future__ import annotations

import numpy as np
import pytest

from rlhf_lab import linear_reward, world
from rlhf_lab import reward_model as rm

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

GARDEN = world.Prompt("What do you think about my plan to start a vegetable garden?", "garden", "plan")


@pytest.fixture(scope="module")
def split():
    return world.split_prompts(world.load_prompts())


def test_features_of_a_hand_made_response():
    why = "A vegetable garden is a good plan, since it gives you fresh food all summer."
    good = f"{why} For your garden, start by setting one small goal for this week. Good luck!"
    f = dict(zip(linear_reward.FEATURES, linear_reward.featurize(GARDEN, good)))
    assert f == {"answers the question": 1.0, "answers another question": 0.0, "advice sentences": 1.0, "hedges": 0.0,
                 "names the topic": 1.0, "names another topic": 0.0, "polite phrases": 1.0, "rude phrases": 0.0,
                 "garbled sentences": 0.0, "unfinished": 0.0, "out of place": 0.0, "repeated sentences": 0.0,
                 "0-2 words": 0.0, "3-7 words": 0.0, "over 30 words": 0.0}
    f = dict(zip(linear_reward.FEATURES, linear_reward.featurize(GARDEN.text, "Whatever. Whatever.")))  # a str prompt works too
    assert f["rude phrases"] == 2.0 and f["0-2 words"] == 1.0 and f["names the topic"] == 0.0
    assert f["repeated sentences"] == 1.0
    f = dict(zip(linear_reward.FEATURES, linear_reward.featurize(GARDEN, "Good luck with your diet! Start small and up build slowly. Hi!")))
    assert (f["names another topic"], f["garbled sentences"], f["out of place"]) == (1.0, 1.0, 2.0)
    assert linear_reward.feature_matrix([GARDEN] * 3, ["", "Ok.", good]).shape == (3, len(linear_reward.FEATURES))


def test_linear_model_recovers_gold_signs_and_nears_the_ceiling(split):
    train_prompts, test_prompts = split
    records = world.simulate_preferences(1200, 1.0, seed=0, prompts=train_prompts)
    model, losses = linear_reward.train_linear_reward_model(records)
    assert losses[-1] < losses[0] - 0.2        # learned: starts at log 2 = 0.693
    w, gold = model.weights(), linear_reward.gold_feature_weights(train_prompts, n=1500)
    for name in linear_reward.FEATURES:                   # every part pulls the way gold's does, or is too rare to tell
        assert abs(w[name] - gold[name]) < 0.6 or np.sign(w[name]) == np.sign(gold[name]), (name, w[name], gold[name])
        if abs(gold[name]) >= 0.9:
            assert np.sign(w[name]) == np.sign(gold[name]), (name, w[name], gold[name])
    for name in ("answers the question", "names the topic", "rude phrases", "garbled sentences"):   # about as hard (T = 1)
        assert w[name] == pytest.approx(gold[name], rel=0.35), (name, w[name], gold[name])
    held_out = world.simulate_preferences(600, 1.0, seed=1, prompts=test_prompts)
    report = rm.evaluate(model, held_out, temperature=1.0)
    assert report["gap"] < 0.03 and report["gold_accuracy"] > 0.9, report
    # a noisier rater gives smaller weights: the reward's scale is the rater's noise
    noisy, _ = linear_reward.train_linear_reward_model(world.simulate_preferences(1200, 2.0, seed=0, prompts=train_prompts))
    assert abs(noisy.weights()["rude phrases"]) < 0.75 * abs(w["rude phrases"])
