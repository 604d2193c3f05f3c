"""The simulated-human world: prompts, gold reward, candidate generator, rater, Bayes ceiling."""
from __future__ import annotations

import math
import random
import statistics

import pytest

from rlhf_lab.preferences import DataFileError, PreferenceRecord
from rlhf_lab.world import (KINDS, PROMPTS_PATH, Prompt, SimulatedRater, bayes_ceiling, build_prompts,
                            candidate_responses, gold_reward, gold_reward_parts, length_score, load_prompts,
                            make_pairs, repeated_fraction, response_corpus, simulate_preferences,
                            split_prompts, topic_of, words)

GARDEN = Prompt("What do you think about my plan to start a vegetable garden?", "garden", "plan")
GOOD = "Happy to help. For your garden, start by setting one small goal for this week. Good luck!"


@pytest.fixture(scope="module")
def prompts() -> list[Prompt]:
    return load_prompts()


@pytest.fixture(scope="module")
def pairs(prompts):
    return make_pairs(prompts, 2000, seed=0)


# ----------------------------------------------------------------------------- prompts
def test_prompts_file_loads_and_matches_the_generator(prompts):
    assert len(prompts) >= 200 and len(set(prompts)) == len(prompts)
    assert prompts == build_prompts()                        # the shipped file is rebuilt by one command
    assert {p.kind for p in prompts} == set(KINDS)
    assert len({p.topic for p in prompts}) >= 40
    assert GARDEN in prompts                                 # the seed lesson's question, made concrete
    for p in prompts:
        assert topic_of(p.text) == p.topic, p


def test_load_prompts_names_the_bad_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"text": "Help with my garden?", "topic": "garden", "kind": "plan"}\n\n'
                    '{"text": "Help with my garden?", "topic": "garden", "kind": "poem"}\n')
    with pytest.raises(DataFileError, match=r"prompts.jsonl:3: kind must be one of"):
        load_prompts(path)
    path.write_text('{"text": "Help with my garden?", "topic": "guitar", "kind": "plan"}\n')
    with pytest.raises(DataFileError, match=r":1: topic 'guitar' does not appear"):
        load_prompts(path)
    with pytest.raises(FileNotFoundError, match="--write-prompts"):
        load_prompts(tmp_path / "missing.jsonl")


def test_split_is_fixed_disjoint_and_complete(prompts):
    train, test = split_prompts(prompts, seed=0, test_fraction=0.2)
    assert len(test) == round(0.2 * len(prompts)) and not set(train) & set(test)
    assert set(train) | set(test) == set(prompts)
    assert (train, test) == split_prompts(prompts, seed=0)
    assert test != split_prompts(prompts, seed=1)[1]


# ----------------------------------------------------------------------------- gold reward
def test_gold_parts_sum_and_text_prompts_work():
    parts = gold_reward_parts(GARDEN, GOOD)
    assert set(parts) == {"helpful", "on_topic", "polite", "repetitive", "length"}
    assert math.isclose(sum(parts.values()), gold_reward(GARDEN, GOOD))
    assert gold_reward(GARDEN.text, GOOD) == gold_reward(GARDEN, GOOD)   # topic found from the text
    assert topic_of("Any tips for my JOB INTERVIEW tomorrow?") == "job interview"
    assert topic_of("Tell me a joke.") is None
    # an unknown prompt still has an on-topic part: a shared content word counts
    assert gold_reward_parts("What about my trip to Paris?", "Paris is lovely in spring.")["on_topic"] == 1.0
    assert gold_reward_parts("What about my trip to Paris?", "Rome is lovely in spring.")["on_topic"] == 0.0


@pytest.mark.parametrize("worse", [
    "Whatever. Figure it out yourself.",                                            # rude
    "",                                                                             # empty
    "Great idea!",                                                                  # the seed lesson's best reply
    "Start by setting one small goal for this week. Good luck!",                    # not on topic
    "For your garden, start by setting one small goal for this week.",              # not polite
    "Happy to help. Your garden is nice. Good luck!",                               # no advice
    " ".join(["Good luck with your garden! Try it."] * 6),                          # repetitive and long
])
def test_gold_prefers_a_polite_on_topic_helpful_response(worse):
    assert gold_reward(GARDEN, GOOD) > gold_reward(GARDEN, worse)


def test_stacking_good_phrases_does_not_pay():
    """What a reward model cannot learn from the candidates: more good phrases stop helping."""
    stacked = (GOOD + " Try to spend twenty minutes on it every day. You could ask a friend to join you."
               " First, write down what you need. Practice a little every day. Hope this helps. Thanks!")
    two_tips = GOOD.replace("Good luck!", "Try to spend twenty minutes on it every day. Good luck!")
    assert gold_reward(GARDEN, stacked) < gold_reward(GARDEN, two_tips)
    assert gold_reward(GARDEN, "try " * 20 + "garden") < gold_reward(GARDEN, two_tips) - 3


def test_text_helpers():
    assert words("Good luck, Ana!") == ["good", "luck", "ana"]
    assert repeated_fraction(words("try this try this try this")) == pytest.approx(3 / 5)
    assert repeated_fraction(words("a b c d")) == 0 and repeated_fraction([]) == 0
    assert length_score(0) < length_score(2) < length_score(5) < length_score(8) == length_score(30) == 0
    assert length_score(60) < length_score(40) < 0


# ----------------------------------------------------------------------------- candidates
def test_candidates_are_mixed_short_and_small_vocabulary(prompts):
    corpus = response_corpus(prompts, per_prompt=8, seed=0)
    assert len(corpus) == 8 * len(prompts)
    gold = [gold_reward(p, r) for p, r in corpus]
    lengths = [len(words(r)) for _, r in corpus]
    assert min(gold) < -3 and max(gold) >= 3.5 and -1 < statistics.mean(gold) < 3   # mixed quality
    assert statistics.pstdev(gold) > 1
    assert sum(n <= 30 for n in lengths) / len(lengths) > 0.9    # long ones are rare on purpose
    assert sum(repeated_fraction(words(r)) > 0.2 for _, r in corpus) / len(corpus) < 0.1
    vocab = {w for _, r in corpus for w in words(r)}
    assert len(vocab) < 400
    assert any(gold_reward_parts(p, r)["polite"] < 0 for p, r in corpus)          # some rude ones
    assert len({r for _, r in corpus}) > 0.6 * len(corpus)                        # varied


def test_generators_are_deterministic(prompts):
    assert candidate_responses(GARDEN, 20, random.Random(3)) == candidate_responses(GARDEN, 20, random.Random(3))
    assert candidate_responses(GARDEN, 20, random.Random(3)) != candidate_responses(GARDEN, 20, random.Random(4))
    assert response_corpus(prompts[:20], 3, seed=1) == response_corpus(prompts[:20], 3, seed=1)
    assert make_pairs(prompts, 50, seed=2) == make_pairs(prompts, 50, seed=2)
    a, b = simulate_preferences(50, seed=5, prompts=prompts), simulate_preferences(50, seed=5, prompts=prompts)
    assert [(r.prompt, r.chosen, r.rejected) for r in a] == [(r.prompt, r.chosen, r.rejected) for r in b]


def test_make_pairs_gives_two_distinct_candidates(pairs, prompts):
    assert len(pairs) == 2000
    assert all(a != b and p in prompts for p, a, b in pairs)


# ----------------------------------------------------------------------------- rater and ceiling
def test_prob_first():
    worse = "Whatever."
    assert SimulatedRater(temperature=0).prob_first(GARDEN, GOOD, worse) == 1.0
    assert SimulatedRater(temperature=0).prob_first(GARDEN, worse, GOOD) == 0.0
    assert SimulatedRater(temperature=0).prob_first(GARDEN, GOOD, GOOD) == 0.5
    rater = SimulatedRater(temperature=2.0)
    diff = gold_reward(GARDEN, GOOD) - gold_reward(GARDEN, worse)
    assert rater.prob_first(GARDEN, GOOD, worse) == pytest.approx(1 / (1 + math.exp(-diff / 2)))
    assert rater.prob_first(GARDEN, GOOD, worse) + rater.prob_first(GARDEN, worse, GOOD) == pytest.approx(1)
    with pytest.raises(ValueError, match="temperature"):
        SimulatedRater(temperature=-1)


def test_rate_makes_a_preference_record():
    rater = SimulatedRater(temperature=0, name="robot")
    r = rater.rate(GARDEN, "Whatever.", GOOD, source="demo")
    assert isinstance(r, PreferenceRecord)
    assert (r.prompt, r.chosen, r.rejected, r.rater, r.source, r.tie) == (GARDEN.text, GOOD, "Whatever.", "robot", "demo", False)


def test_rater_agreement_matches_the_bayes_ceiling(pairs):
    """Empirical agreement with gold's preferred side is within 3 standard errors of the ceiling."""
    for temperature in (0.5, 1.0, 2.0):
        rater = SimulatedRater(temperature=temperature, seed=11)
        agree, var = 0, 0.0
        for prompt, a, b in pairs:
            gold_says_a = gold_reward(prompt, a) >= gold_reward(prompt, b)   # a gold tie counts as "a"
            agree += rater.prefers_first(prompt, a, b) == gold_says_a
            p = rater.prob_first(prompt, a, b)
            var += p * (1 - p)
        ceiling = bayes_ceiling(pairs, temperature)
        se = math.sqrt(var) / len(pairs)
        assert abs(agree / len(pairs) - ceiling) < 3 * se, (temperature, agree / len(pairs), ceiling, se)


def test_temperature_lowers_the_ceiling(pairs):
    ceilings = [bayes_ceiling(pairs[:500], t) for t in (0, 0.25, 0.5, 1, 2, 4, 1000)]
    assert all(x > y for x, y in zip(ceilings, ceilings[1:])), ceilings
    assert ceilings[0] > 0.9 and ceilings[-1] == pytest.approx(0.5, abs=0.01)
    assert 0.7 < bayes_ceiling(pairs, 1.0) < 0.9            # temperature 1 is moderate noise
