"""The transformer reward model (``reward_model.py``): the evaluation functions on hand-made cases, encoding,
scoring, saving, a training run that must learn within a few points of the Bayes ceiling (fixed seeds, small
budget), the stop on a NaN loss, and the shipped model against its info file.
(The loss: test_bradley_terry.py; the linear model: test_linear_reward.py; the data: test_reward_data.py.)"""
from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import pytest
import torch

from rlhf_lab import reward_data, world
from rlhf_lab import reward_model as rm
from rlhf_lab.models import DEFAULT_POLICY, format_prompt, format_response
from rlhf_lab.preferences import PreferenceRecord
from rlhf_lab.seed import set_seed as rlhf_lab_seed

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py: tiny models run fastest on one thread

GARDEN = world.Prompt("What do you think about my plan to start a vegetable garden?", "garden", "plan")


@pytest.fixture(scope="module")
def split():
    return world.split_prompts(world.load_prompts())


# ----------------------------------------------------------------------------- evaluation
def _lookup(rewards: dict[str, float]):
    """A scorer from a dict response -> reward (prompts ignored)."""
    return lambda prompts, responses: torch.tensor([rewards[r] for r in responses])


def test_accuracy_and_calibration_on_a_synthetic_case():
    rewards = {"a": math.log(4), "b": 0.0, "c": 0.0, "d": 2.0}
    records = [PreferenceRecord("p", "a", "b"),             # margin log 4: right, P(chosen) = 4 / 5 = 0.8
               PreferenceRecord("p", "b", "a"),             # margin -log 4: wrong, P = 0.2
               PreferenceRecord("p", "a", "c"),             # margin log 4: right, P = 0.8
               PreferenceRecord("p", "b", "c"),             # margin 0: half right, P = 0.5
               PreferenceRecord("p", "d", "a", tie=True)]   # a tie: left out
    scorer = _lookup(rewards)
    assert rm.accuracy(scorer, records) == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    torch.testing.assert_close(rm.reward_margins(scorer, records[:2]), torch.tensor([math.log(4), -math.log(4)]))
    pred, observed, counts = rm.calibration(scorer, records, bins=4)
    # ordered pairs (predicted, outcome): (.8, 1) (.2, 1) (.8, 1) (.5, 1), reversed (.2, 0) (.8, 0) (.2, 0) (.5, 0)
    # bins [0, .25) [.25, .5) [.5, .75) [.75, 1]: 3 x .2 (1 of them chosen), none, 2 x .5 (1), 3 x .8 (2)
    assert counts.tolist() == [3, 0, 2, 3]
    assert np.isnan(pred[1]) and np.isnan(observed[1])
    np.testing.assert_allclose(pred[[0, 2, 3]], [0.2, 0.5, 0.8], rtol=1e-6)
    np.testing.assert_allclose(observed[[0, 2, 3]], [1 / 3, 1 / 2, 2 / 3])
    with pytest.raises(ValueError, match="no pairs"):
        rm.accuracy(scorer, records[-1:])


def test_gold_is_calibrated_and_reaches_the_ceiling(split):
    """On clicks of a temperature-1 rater, the gold reward itself is the ideal reward model."""
    records = world.simulate_preferences(2000, 1.0, seed=3, prompts=split[1])
    report = rm.evaluate(rm.gold_scorer, records, temperature=1.0)
    assert report["expected_accuracy"] == pytest.approx(report["ceiling"])   # the ceiling IS gold's expected accuracy
    assert abs(report["accuracy"] - report["ceiling"]) < 0.025                # the clicks: ceiling up to luck
    assert report["gold_accuracy"] == 1.0 and 0.78 < report["ceiling"] < 0.88
    pred, observed, counts = rm.calibration(rm.gold_scorer, records, bins=10)
    full = counts > 250
    assert full.sum() >= 4
    np.testing.assert_allclose(observed[full], pred[full], atol=0.06)
    # a model that says the opposite of gold is as wrong as gold is right
    anti = lambda p, r: -rm.gold_scorer(p, r)
    assert rm.accuracy(anti, records) == pytest.approx(1 - report["accuracy"], abs=0.01)


# ----------------------------------------------------------------------------- the transformer reward model
@pytest.fixture(scope="module")
def policy_path():
    if not (DEFAULT_POLICY / "config.json").exists():
        pytest.fail(f"no tiny policy at {DEFAULT_POLICY}: build it with `python -m rlhf_lab.pretrain`")
    return DEFAULT_POLICY


def test_encoding_is_the_policy_format_right_padded(policy_path):
    model, tok = rm.load_reward_model(policy_path)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    responses = ["Good luck!", "Start by setting one small goal for this week. Hope this helps."]
    ids, mask = rm.encode_for_reward(tok, [GARDEN, GARDEN.text], responses)
    for row, response in enumerate(responses):
        real = ids[row][mask[row].bool()].tolist()
        assert mask[row, :len(real)].all() and not mask[row, len(real):].any()       # padding on the right only
        assert real[-1] == tok.eos_token_id and (ids[row, len(real):] == tok.pad_token_id).all()
        assert tok.decode(real) == tok.bos_token + format_prompt(GARDEN.text) + format_response(response) + tok.eos_token


def test_scores_do_not_depend_on_padding_or_batching(policy_path):
    torch.manual_seed(0)
    model, tok = rm.load_reward_model(policy_path)
    prompts = [GARDEN.text, "How do I learn Python without stress?", "Should I adopt a dog this year?"]
    responses = ["Ok.", "Start small and build up slowly. Practice a little every day. Good luck with Python!", "Whatever."]
    batched = rm.score(model, tok, prompts, responses, batch_size=3)
    alone = torch.cat([rm.score(model, tok, [p], [r]) for p, r in zip(prompts, responses)])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)
    assert batched.shape == (3,) and batched.std() > 0


def test_save_load_round_trip_gives_identical_scores(policy_path, tmp_path):
    torch.manual_seed(0)
    model, tok = rm.load_reward_model(policy_path)
    torch.nn.init.normal_(model.score.weight, std=0.5)    # a head that is surely not the initial one
    prompts, responses = [GARDEN.text] * 2, ["Thanks for asking! First, write down what you need.", "Hmm."]
    before = rm.score(model, tok, prompts, responses)
    rm.save_reward_model(model, tok, tmp_path / "rm", info={"note": "test"})
    assert (tmp_path / "rm" / "model.safetensors").exists()
    assert json.loads((tmp_path / "rm" / rm.INFO_FILE).read_text()) == {"note": "test"}
    loaded, loaded_tok = rm.load_reward_model(tmp_path / "rm")
    torch.testing.assert_close(rm.score(loaded, loaded_tok, prompts, responses), before, atol=0, rtol=0)
    half, _ = rm.load_reward_model(tmp_path / "rm", dtype=torch.bfloat16)   # as for a big model on a GPU
    assert half.score.weight.dtype == torch.bfloat16 and loaded.score.weight.dtype == torch.float32
    with pytest.raises(FileNotFoundError):
        rm.load_reward_model(tmp_path / "missing")


def test_transformer_reward_model_learns_from_k_way_comparisons(policy_path, split):
    """A small budget (fixed seeds, notebook 03's teaching setting scaled down) learns: the loss falls, and held out
    it agrees with gold's preferred side on most pairs."""
    train_prompts, test_prompts = split
    comparisons = reward_data.simulate_comparisons(train_prompts, n_prompts=96, k=16, temperature=1.0, seed=0)
    held_out = world.simulate_preferences(400, 1.0, seed=1, prompts=test_prompts)
    rlhf_lab_seed(0)
    model, tok = rm.load_reward_model(policy_path)
    start = time.perf_counter()
    history = rm.train_reward_model(model, tok, comparisons, (), rm.RewardTrainConfig(epochs=1, batch_size=120, lr=1e-3),
                                    progress=False)
    report = rm.evaluate(model, held_out, 1.0, tok)
    print(f"transformer RM: {report} in {time.perf_counter() - start:.1f} s")
    assert np.mean(history.loss[-5:]) < np.mean(history.loss[:5]) - 0.05
    assert report["gold_accuracy"] > 0.7 and report["accuracy"] > 0.65, report
    # the evaluation functions agree with each other on the transformer too
    assert rm.accuracy(model, held_out[:50], tok) == pytest.approx(
        rm.evaluate(rm.CachedScorer(model, tok), held_out[:50], 1.0)["accuracy"])


def test_reward_model_training_stops_on_a_nan_loss_and_names_the_step(policy_path, split):
    records = reward_data.simulate_comparisons(split[0], n_prompts=2, k=3, temperature=1.0, seed=0)
    model, tok = rm.load_reward_model(policy_path)
    with torch.no_grad():
        model.score.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="reward model loss is nan at step 1 "):
        rm.train_reward_model(model, tok, records, config=rm.RewardTrainConfig(batch_size=3), progress=False)
    with pytest.raises(ValueError, match="at least one"):
        rm.train_reward_model(model, tok, [], progress=False)


def _probe_pairs(prompts, defect, n, seed):
    """n minimal pairs (prompt, fluent reply, the reply with ``defect``) as ``reward_data.simulate_minimal_pairs`` makes them."""
    records = reward_data.simulate_minimal_pairs(prompts, {defect: n}, temperature=0.0, seed=seed)
    return [r.prompt for r in records], [r.chosen for r in records], [r.rejected for r in records]


@pytest.fixture(scope="module")
def shipped_reward_model():
    if not (rm.DEFAULT_REWARD_MODEL / "config.json").exists():
        pytest.fail(f"no shipped reward model at {rm.DEFAULT_REWARD_MODEL}: rebuild it with python -m rlhf_lab.reward_model")
    return rm.load_reward_model(rm.DEFAULT_REWARD_MODEL)


def test_shipped_reward_model_is_what_its_info_file_says(shipped_reward_model):
    """The course's reward model on its own held-out pairs: the accuracy its info file records, and no worse
    than measured when it was shipped (0.740 against a ceiling of 0.842, gold accuracy 0.802). Issue #11 asks
    for a gap under 2 points; this model is about 10 points short of it."""
    model, tok = shipped_reward_model
    info = json.loads((rm.DEFAULT_REWARD_MODEL / rm.INFO_FILE).read_text())
    setup = reward_data.DefaultRewardSetup()
    assert info["setup"] == dataclasses.asdict(setup)        # the shipped model is the one the default setup builds
    held_out = reward_data.default_data(dataclasses.replace(setup, stages=[]))[1]
    report = rm.evaluate(rm.CachedScorer(model, tok), held_out, setup.temperature)
    assert report["accuracy"] == pytest.approx(info["held_out"]["accuracy"], abs=1e-6)   # the file tells the truth
    assert report["ceiling"] - report["accuracy"] < 0.12, report
    assert report["gold_accuracy"] > 0.78, report


#: Share of held-out minimal pairs the shipped model must rank right, per defect: what it reached when it was
#: shipped (notebook 03 prints the table), less a margin for this smaller sample. The topic-drift rows are the
#: ones the minimal pairs taught it; several others are far from solved (garbled sentences, wrong-kind answers).
SHIPPED_AT_LEAST = {"garbled": 0.55, "cut off": 0.55, "greeting at the end": 0.8, "sign-off in the middle": 0.55,
                    "said twice": 0.65, "another topic's answer": 0.8, "sign-off about another topic": 0.8,
                    "rude": 0.8, "no answer": 0.8, "another question's answer": 0.4}


@pytest.mark.parametrize("defect", world.DEFECTS)
def test_shipped_reward_model_sees_each_defect_as_often_as_when_shipped(shipped_reward_model, split, defect):
    """On held-out prompts, the reply with one defect scores below the same reply without it, at least as often
    as :data:`SHIPPED_AT_LEAST` says; the topic-drift defects must be seen far more often than a coin flip."""
    model, tok = shipped_reward_model
    prompts, good, bad = _probe_pairs(split[1], defect, 60, seed=123)
    right = (rm.score(model, tok, prompts, good) > rm.score(model, tok, prompts, bad)).float().mean().item()
    assert right >= SHIPPED_AT_LEAST[defect], (defect, right)


def test_default_reward_model_is_loaded_or_built(policy_path, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(rm, "build_default_reward_model", lambda path, **kw: calls.append(path) or
                        rm.save_reward_model(*rm.load_reward_model(policy_path), path))
    model, tok = rm.default_reward_model(tmp_path / "rm", progress=False)     # missing: built
    model, tok = rm.default_reward_model(tmp_path / "rm", progress=False)     # present: loaded
    assert calls == [tmp_path / "rm"] and model.config.num_labels == 1
