"""The simulated-human world: prompts, gold reward, candidate generator, rater, Bayes ceiling."""
from __future__ import annotations

import math
import random
import statistics

import pytest

from rlhf_lab.preferences import DataFileError, PreferenceRecord
from rlhf_lab.phrasebook import ANSWER_KINDS, ANSWERS
from rlhf_lab.world import DEFECTS as WORLD_DEFECTS
from rlhf_lab.world import (KINDS, PROMPTS_PATH, Prompt, SimulatedRater, asks_of, bayes_ceiling, build_prompts,
                            candidate_responses, fluency, garble, gold_reward, gold_reward_parts, is_well_formed,
                            length_score, load_prompts, make_pairs, read_reply, response_corpus,
                            simulate_preferences, split_prompts, split_sentences, topic_of, topics_in, with_defect,
                            words)

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
    assert set(parts) == {"answers", "helpful", "on_topic", "off_topic", "polite", "well_formed", "finished",
                          "order", "repetitive", "length"}
    assert math.isclose(sum(parts.values()), gold_reward(GARDEN, GOOD))
    assert gold_reward(GARDEN.text, GOOD) == gold_reward(GARDEN, GOOD)   # topic and question found from the text
    assert GARDEN.asks == ("why",) and asks_of("How much time does it take to learn Python?") == ("time",)
    assert asks_of("Tell me a joke.") == ()
    assert topic_of("Any tips for my JOB INTERVIEW tomorrow?") == "job interview"
    assert topic_of("Tell me a joke.") is None
    # an unknown prompt still has an on-topic part: a shared content word counts
    assert gold_reward_parts("What about my trip to Paris?", "Paris is lovely in spring.")["on_topic"] == 1.0
    assert gold_reward_parts("What about my trip to Paris?", "Rome is lovely in spring.")["on_topic"] == 0.0


# Each case: the defect, and the same reply without it (GOOD, or a variant). The defect must cost.
WHY = "A vegetable garden is a good plan, since it gives you fresh food all summer."
GOOD_ANSWER = f"Happy to help. {WHY} Start small and build up slowly. Good luck with your garden!"
DEFECTS = {
    "answers: no answer to what was asked": "Happy to help. Let us talk about your garden. Start small and build up slowly. Good luck with your garden!",
    "answers: answers another question": "Happy to help. A garden is easy if you start with beans, lettuce and herbs. Start small and build up slowly. Good luck with your garden!",
    "helpful: a hedge instead of advice": f"Happy to help. {WHY} It depends. Good luck with your garden!",
    "on_topic: the topic never named": "Happy to help. Start small and build up slowly. Good luck!",
    "off_topic: a sign-off about another topic": f"Happy to help. {WHY} Start small and build up slowly. Good luck with your diet!",
    "off_topic: an answer about another topic": f"Happy to help. {WHY} Start by visiting a shelter and asking which dog fits your home.",
    "polite: rude": f"Whatever. {WHY} Start small and build up slowly. Good luck with your garden!",
    "well_formed: a garbled sentence": f"Happy to help. {WHY} Start small and up build slowly. Good luck with your garden!",
    "well_formed: two sentences merged": f"Happy to help. {WHY} Start small and a friend to join you. Good luck with your garden!",
    "well_formed: doubled commas": f"Happy to help. {WHY} For think about,, start small and build up slowly. Good luck with your garden!",
    "finished: cut off": f"Happy to help. {WHY} Start small and build up",
    "order: a greeting at the end": f"{WHY} Start small and build up slowly. Good luck with your garden! Hello!",
    "order: a sign-off in the middle": f"Happy to help. Good luck with your garden! {WHY} Start small and build up slowly.",
    "repetitive: a sentence said twice": f"Happy to help. {WHY} Start small and build up slowly. Start small and build up slowly.",
    "repetitive: the same advice with a lead-in": f"Happy to help. {WHY} Start small and build up slowly. For your garden, start small and build up slowly.",
    "length: one word": "Sure.",
    "length: empty": "",
}


@pytest.mark.parametrize("name", DEFECTS)
def test_each_defect_costs(name):
    part = name.split(":")[0]
    good, bad = gold_reward_parts(GARDEN, GOOD_ANSWER), gold_reward_parts(GARDEN, DEFECTS[name])
    assert sum(bad.values()) < sum(good.values()), (name, bad)
    assert bad[part] < good[part], (name, part, bad[part], good[part])


def test_a_reply_that_never_ended_is_unfinished_even_at_a_full_stop():
    assert gold_reward_parts(GARDEN, GOOD_ANSWER)["finished"] == 0
    assert gold_reward_parts(GARDEN, GOOD_ANSWER, ended=False)["finished"] < 0
    assert gold_reward(GARDEN, GOOD_ANSWER, ended=False) < gold_reward(GARDEN, GOOD_ANSWER)


def test_well_formed_and_finished_checks():
    assert is_well_formed(WHY) and is_well_formed("For your garden, start small and build up slowly.")
    assert is_well_formed("Good luck with your diet!")          # well-formed; off topic is another part
    assert not is_well_formed("Start small and up build slowly.") and not is_well_formed("Practice a little every")
    assert split_sentences("Hi!  Try a small test run before you") == (["Hi!"], "Try a small test run before you")
    assert split_sentences("Hi! Good luck!") == (["Hi!", "Good luck!"], "")
    r = read_reply(GARDEN, "Hi! Try a small test run before you")
    assert r.unfinished and r.malformed == 0                    # a cut-off sentence is unfinished, not garbled
    assert fluency(["Hi! Practice a little every day.", "Start small and up build slowly."]) == \
        {"well_formed": 2 / 3, "ended": 1.0}
    assert fluency(["Hi!"], ended=[False])["ended"] == 0.0


def test_every_answer_names_its_topic_and_answers_its_question(prompts):
    for p in prompts:
        assert p.asks, p
        for kind in p.asks:
            reply = ANSWERS[p.topic][ANSWER_KINDS.index(kind)]
            parts = gold_reward_parts(p, reply)
            assert parts["answers"] == 2.0 and parts["on_topic"] == 1.0 and parts["off_topic"] == 0, (p, reply)


@pytest.mark.parametrize("worse", [
    "Whatever. Figure it out yourself.",                                            # rude
    "",                                                                             # empty
    "Great idea!",                                                                  # the seed lesson's best reply
    "Start by setting one small goal for this week. Good luck!",                    # not on topic
    "Happy to help. Your garden is nice. Good luck!",                               # not a sentence of the world
    " ".join(["Good luck with your garden! Try it."] * 6),                          # repetitive and long
])
def test_gold_prefers_a_polite_on_topic_answer(worse):
    assert gold_reward(GARDEN, GOOD_ANSWER) > gold_reward(GARDEN, GOOD) > gold_reward(GARDEN, worse)


def test_stacking_good_sentences_does_not_pay():
    """What a reward model cannot learn from the candidates: more good sentences stop helping."""
    stacked = (GOOD_ANSWER + " Try to spend twenty minutes on it every day. You could ask a friend to join you."
               " First, write down what you need. Practice a little every day. Hope this helps.")
    assert gold_reward(GARDEN, stacked) < gold_reward(GARDEN, GOOD_ANSWER)
    assert gold_reward(GARDEN, "try " * 20 + "garden") < gold_reward(GARDEN, GOOD_ANSWER) - 3


def test_happy_to_help_fits_at_either_end():
    assert read_reply(GARDEN, f"Happy to help. {WHY}").misplaced == 0
    assert read_reply(GARDEN, f"{WHY} Happy to help.").misplaced == 0
    assert read_reply(GARDEN, f"Good luck! {WHY}").misplaced == 1


def test_text_helpers():
    assert words("Good luck, Ana!") == ["good", "luck", "ana"]
    assert topics_in("Good luck with your diet and the bike!") == {"diet", "bike"}
    assert topics_in("A job interview in a new city.") == {"job interview", "new city"}
    assert length_score(0) < length_score(2) < length_score(5) < length_score(8) == length_score(30) == 0
    assert length_score(60) < length_score(40) < 0


# ----------------------------------------------------------------------------- candidates
def test_candidates_are_mixed_and_show_every_defect(prompts):
    rng = random.Random(0)
    cands = [(p, r) for p in prompts for r in candidate_responses(p, 8, rng)]
    gold = [gold_reward(p, r) for p, r in cands]
    assert min(gold) < -3 and max(gold) >= 4 and 0 < statistics.mean(gold) < 3     # mixed quality
    assert statistics.pstdev(gold) > 1
    parts = [gold_reward_parts(p, r) for p, r in cands]
    for part in ("answers", "off_topic", "polite", "well_formed", "finished", "order", "repetitive"):
        shown = sum(x[part] != 0 for x in parts) / len(parts)
        assert 0.02 < shown < 0.6, (part, shown)            # every kind of mistake (and answer) is there
    assert sum(x["answers"] == 2 for x in parts) / len(parts) > 0.3
    assert len({r for _, r in cands}) > 0.6 * len(cands)                              # varied


def test_corpus_is_fluent_and_mixed(prompts):
    corpus = response_corpus(prompts, per_prompt=8, seed=0)
    assert len(corpus) == 8 * len(prompts)
    assert fluency([r for _, r in corpus]) == {"well_formed": 1.0, "ended": 1.0}
    assert all(not read_reply(p, r).unfinished for p, r in corpus)
    lengths = [len(words(r)) for _, r in corpus]
    assert sum(n <= 35 for n in lengths) / len(lengths) > 0.9    # long ones are rare on purpose
    vocab = {w for _, r in corpus for w in words(r)}
    assert len(vocab) < 1200
    gold = [gold_reward(p, r) for p, r in corpus]
    assert statistics.pstdev(gold) > 1 and any(gold_reward_parts(p, r)["polite"] < 0 for p, r in corpus)


def test_garble_never_returns_a_phrasebook_sentence():
    rng = random.Random(0)
    for s in [WHY, "Hi!", "Start small and build up slowly.", "Good luck with your garden!"] * 20:
        assert not is_well_formed(garble(s, rng))


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
    assert 0.75 < bayes_ceiling(pairs, 1.0) < 0.9           # temperature 1 is moderate noise


# ----------------------------------------------------------------------------- minimal pairs
@pytest.mark.parametrize("defect", WORLD_DEFECTS)
def test_each_minimal_pair_differs_in_one_defect_and_gold_sees_it(defect):
    rng = random.Random(0)
    base = f"Happy to help. {WHY} Start small and build up slowly. Good luck with your garden!"
    for _ in range(10):
        worse = with_defect(GARDEN, base, defect, rng)
        assert worse is not None and worse != base, defect
        assert gold_reward(GARDEN, worse) < gold_reward(GARDEN, base), (defect, worse)
    assert with_defect(GARDEN, "Hi! Try a small test run before you", defect, rng) is None   # a cut-off base: no pair


def test_a_defect_that_does_not_apply_is_none_and_unknown_ones_fail():
    rng = random.Random(0)
    no_answer = "Happy to help. Start small and build up slowly."
    assert with_defect(GARDEN, no_answer, "another topic's answer", rng) is None
    assert with_defect(GARDEN, no_answer, "sign-off about another topic", rng) is None   # no sign-off to swap
    with pytest.raises(ValueError, match="unknown defect"):
        with_defect(GARDEN, no_answer, "too clever", rng)
