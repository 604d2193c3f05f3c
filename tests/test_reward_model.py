"""Reward models: the Bradley-Terry loss by hand and against a library formula, the linear model's
weights against gold's, the evaluation functions on hand-made cases, and a transformer reward model
that must learn to within a few points of the Bayes ceiling (fixed seeds, small budget)."""
from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlhf_lab import reward_model as rm
from rlhf_lab import world
from rlhf_lab.models import DEFAULT_POLICY, format_prompt, format_response
from rlhf_lab.preferences import PreferenceRecord
from rlhf_lab.seed import set_seed as rlhf_lab_seed

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py: tiny models run fastest on one thread

GARDEN = world.Prompt("What do you think about my plan to start a vegetable garden?", "garden", "plan")


@pytest.fixture(scope="module")
def split():
    return world.split_prompts(world.load_prompts())


# ----------------------------------------------------------------------------- the loss
def test_bt_loss_by_hand():
    # pair 1: r_c - r_r = 1 -> -log sigmoid(1) = log(1 + e^-1) = 0.313262
    # pair 2: r_c - r_r = 0 -> -log sigmoid(0) = log 2          = 0.693147
    # pair 3: r_c - r_r = -2 -> log(1 + e^2)                    = 2.126928
    loss = rm.bradley_terry_loss(torch.tensor([1.0, 0.5, -1.0]), torch.tensor([0.0, 0.5, 1.0]))
    assert loss.item() == pytest.approx((0.313262 + 0.693147 + 2.126928) / 3, abs=1e-5)
    # with a margin of 1 on every pair: differences 0, -1, -3
    loss = rm.bradley_terry_loss(torch.tensor([1.0, 0.5, -1.0]), torch.tensor([0.0, 0.5, 1.0]), margin=1.0)
    assert loss.item() == pytest.approx((0.693147 + 1.313262 + 3.048587) / 3, abs=1e-5)


def test_bt_loss_matches_direct_formula_and_library():
    g = torch.Generator().manual_seed(0)
    chosen, rejected = torch.randn(64, generator=g) * 3, torch.randn(64, generator=g) * 3
    loss = rm.bradley_terry_loss(chosen, rejected)
    direct = -torch.log(torch.sigmoid(chosen - rejected)).mean()
    library = F.binary_cross_entropy_with_logits(chosen - rejected, torch.ones(64))
    torch.testing.assert_close(loss, direct)
    torch.testing.assert_close(loss, library)
    # targets: 1 is the plain loss; soft targets are the library's cross-entropy with those labels
    t = torch.rand(64, generator=g)
    torch.testing.assert_close(rm.bradley_terry_loss(chosen, rejected, targets=torch.ones(64)), loss)
    torch.testing.assert_close(rm.bradley_terry_loss(chosen, rejected, targets=t),
                               F.binary_cross_entropy_with_logits(chosen - rejected, t))
    # margins per pair: same as shifting the difference
    m = torch.rand(64, generator=g)
    torch.testing.assert_close(rm.bradley_terry_loss(chosen, rejected, margin=m),
                               rm.bradley_terry_loss(chosen - m, rejected))


def test_bt_loss_gradient_ties_and_extremes():
    diff = torch.tensor([2.0], requires_grad=True)
    rm.bradley_terry_loss(diff, torch.zeros(1)).backward()
    assert diff.grad.item() == pytest.approx(-(1 - 1 / (1 + math.exp(-2))))   # d/dd -log sigmoid(d) = -(1 - sigmoid(d))
    # a tie (target 0.5) is happiest with equal rewards: zero gradient at d = 0, loss log 2
    d0 = torch.zeros(1, requires_grad=True)
    loss = rm.bradley_terry_loss(d0, torch.zeros(1), targets=torch.tensor([0.5]))
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2)) and d0.grad.item() == pytest.approx(0.0)
    tie = PreferenceRecord("p", "a", "b", tie=True)
    assert rm.tie_targets([tie, PreferenceRecord("p", "a", "b")]).tolist() == [0.5, 1.0]
    # large differences stay finite (logsigmoid, not log(sigmoid))
    huge = rm.bradley_terry_loss(torch.tensor([-200.0, 200.0]), torch.zeros(2))
    assert huge.item() == pytest.approx(100.0)
    with pytest.raises(ValueError, match="shape"):
        rm.bradley_terry_loss(torch.zeros(3), torch.zeros(4))


# ----------------------------------------------------------------------------- the linear model
def test_features_of_a_hand_made_response():
    why = "A vegetable garden is a good plan, since it gives you fresh food all summer."
    good = f"{why} For your garden, start by setting one small goal for this week. Good luck!"
    f = dict(zip(rm.FEATURES, rm.featurize(GARDEN, good)))
    assert f == {"answers the question": 1.0, "answers another question": 0.0, "advice sentences": 1.0, "hedges": 0.0,
                 "names the topic": 1.0, "names another topic": 0.0, "polite phrases": 1.0, "rude phrases": 0.0,
                 "garbled sentences": 0.0, "unfinished": 0.0, "out of place": 0.0, "repeated sentences": 0.0,
                 "0-2 words": 0.0, "3-7 words": 0.0, "over 30 words": 0.0}
    f = dict(zip(rm.FEATURES, rm.featurize(GARDEN.text, "Whatever. Whatever.")))  # a str prompt works too
    assert f["rude phrases"] == 2.0 and f["0-2 words"] == 1.0 and f["names the topic"] == 0.0
    assert f["repeated sentences"] == 1.0
    f = dict(zip(rm.FEATURES, rm.featurize(GARDEN, "Good luck with your diet! Start small and up build slowly. Hi!")))
    assert (f["names another topic"], f["garbled sentences"], f["out of place"]) == (1.0, 1.0, 2.0)
    assert rm.feature_matrix([GARDEN] * 3, ["", "Ok.", good]).shape == (3, len(rm.FEATURES))


def test_linear_model_recovers_gold_signs_and_nears_the_ceiling(split):
    train_prompts, test_prompts = split
    records = world.simulate_preferences(1200, 1.0, seed=0, prompts=train_prompts)
    model, losses = rm.train_linear_reward_model(records)
    assert losses[-1] < losses[0] - 0.2        # learned: starts at log 2 = 0.693
    w, gold = model.weights(), rm.gold_feature_weights(train_prompts, n=1500)
    for name in rm.FEATURES:                   # every part pulls the way gold's does, or is too rare to tell
        assert abs(w[name] - gold[name]) < 0.6 or np.sign(w[name]) == np.sign(gold[name]), (name, w[name], gold[name])
        if abs(gold[name]) >= 0.9:
            assert np.sign(w[name]) == np.sign(gold[name]), (name, w[name], gold[name])
    for name in ("answers the question", "names the topic", "rude phrases", "garbled sentences"):   # about as hard (T = 1)
        assert w[name] == pytest.approx(gold[name], rel=0.35), (name, w[name], gold[name])
    held_out = world.simulate_preferences(600, 1.0, seed=1, prompts=test_prompts)
    report = rm.evaluate(model, held_out, temperature=1.0)
    assert report["gap"] < 0.03 and report["gold_accuracy"] > 0.9, report
    # a noisier rater gives smaller weights: the reward's scale is the rater's noise
    noisy, _ = rm.train_linear_reward_model(world.simulate_preferences(1200, 2.0, seed=0, prompts=train_prompts))
    assert abs(noisy.weights()["rude phrases"]) < 0.75 * abs(w["rude phrases"])


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
    comparisons = rm.simulate_comparisons(train_prompts, n_prompts=96, k=16, temperature=1.0, seed=0)
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


def _probe_pairs(prompts, defect, n, seed):
    """n minimal pairs (prompt, fluent reply, the reply with ``defect``) as ``rm.simulate_minimal_pairs`` makes them."""
    records = rm.simulate_minimal_pairs(prompts, {defect: n}, temperature=0.0, seed=seed)
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
    setup = rm.DefaultRewardSetup()
    assert info["setup"] == dataclasses.asdict(setup)        # the shipped model is the one the default setup builds
    held_out = rm.default_data(dataclasses.replace(setup, stages=[]))[1]
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


def test_minimal_pairs_differ_in_one_defect(split):
    records = rm.simulate_minimal_pairs(split[0], {"said twice": 5, "another topic's answer": 5}, temperature=0.0, seed=0)
    assert len(records) == 10
    for r in records:      # a rater without noise prefers the reply without the defect
        assert world.gold_reward(r.prompt, r.chosen) > world.gold_reward(r.prompt, r.rejected)
        assert r.source.startswith("minimal pair: ")
    with pytest.raises(ValueError, match="unknown defects"):
        rm.simulate_minimal_pairs(split[0], {"nonsense": 1})


def test_comparisons_share_responses_and_train_in_groups(split):
    records = rm.simulate_comparisons(split[0], n_prompts=3, k=4, temperature=1.0, seed=0)
    assert len(records) == 3 * 6                                   # k(k-1)/2 pairs per prompt
    for group in (records[:6], records[6:12], records[12:]):
        assert len({r.prompt for r in group}) == 1
        assert len({t for r in group for t in (r.chosen, r.rejected)}) == 4
    again = rm.simulate_comparisons(split[0], n_prompts=3, k=4, temperature=1.0, seed=0)
    assert [(r.prompt, r.chosen, r.rejected) for r in again] == [(r.prompt, r.chosen, r.rejected) for r in records]


def test_default_reward_model_is_loaded_or_built(policy_path, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(rm, "build_default_reward_model", lambda path, **kw: calls.append(path) or
                        rm.save_reward_model(*rm.load_reward_model(policy_path), path))
    model, tok = rm.default_reward_model(tmp_path / "rm", progress=False)     # missing: built
    model, tok = rm.default_reward_model(tmp_path / "rm", progress=False)     # present: loaded
    assert calls == [tmp_path / "rm"] and model.config.num_labels == 1
