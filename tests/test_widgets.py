"""The rating widgets and the quiz, driven from Python (``.click``) the way a person drives them.

The file is read back after clicks, so these tests check what is on disk, not what the widget
believes. tests/test_browser_rating.py does the same through JupyterLab in a real browser.
"""
from __future__ import annotations

import ast
import json
import random
from pathlib import Path

import pytest

from rlhf_lab import widgets

from rlhf_lab.preferences import (PreferenceRecord, PreferenceStore, ScoreRecord, ScoreStore, read_preferences,
                                  read_scores)
from rlhf_lab.widgets import (RUBRIC, SCORE_CUTS, PairwiseRater, Quiz, ScoreRater, rate_blind, rate_pairs,
                              rate_scores, simulated_score)
from rlhf_lab.world import Prompt, SimulatedRater, gold_reward, load_prompts, make_pairs

PAIRS = [("Say hello.", "Hello! How can I help?", "hello hello hello"),
         ("Name a fruit.", "An apple.", "No."),
         ("What is 2 + 2?", "4.", "Maybe 5?"),
         ("Suggest a pet name.", "Biscuit.", "Names are hard."),
         ("Say thanks.", "Thank you!", "k.")]


def triples(path) -> list[tuple]:
    return [(r.prompt, r.chosen, r.rejected, r.tie) for r in read_preferences(path)]


@pytest.fixture
def store(tmp_path) -> PreferenceStore:
    return PreferenceStore(tmp_path / "ratings.jsonl")


# ------------------------------------------------------------------------------ PairwiseRater
def test_every_click_is_on_disk_at_once_in_order(store):
    rater = PairwiseRater(PAIRS, store, rater_name="ana", source="test")
    expected = []
    for choice, (prompt, a, b) in zip(["A", "B", "A", "B"], PAIRS):
        record = rater.click(choice)
        expected.append((prompt, a, b, False) if choice == "A" else (prompt, b, a, False))
        assert triples(store.path) == expected  # read from the file, right after the click
        assert record == read_preferences(store.path)[-1]
    assert {(r.rater, r.source) for r in read_preferences(store.path)} == {("ana", "test")}


def test_tie_writes_a_tie_record_in_shown_order(store):
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    rater.click("tie")
    (record,) = read_preferences(store.path)
    assert record.tie is True and (record.chosen, record.rejected) == PAIRS[0][1:]
    assert record.rater == "ana"


def test_skip_writes_nothing_and_moves_on(store):
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    assert rater.click("skip") is None
    assert not store.path.exists() or triples(store.path) == []
    assert rater.current == PAIRS[1] and rater.progress_text == "2 of 5"
    rater.click("B")
    assert triples(store.path) == [(PAIRS[1][0], PAIRS[1][2], PAIRS[1][1], False)]


def test_undo_removes_the_last_written_record_and_goes_back_to_its_pair(store):
    """The browser test's sequence: A, B, Tie, Skip, Undo, A."""
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    progress = []
    for choice in ["A", "B", "tie", "skip", "undo", "A"]:
        rater.click(choice)
        progress.append(rater.progress_text)
    assert progress == ["2 of 5", "3 of 5", "4 of 5", "5 of 5", "3 of 5", "4 of 5"]
    p0, p1, p2 = PAIRS[:3]
    assert triples(store.path) == [(p0[0], p0[1], p0[2], False), (p1[0], p1[2], p1[1], False),
                                   (p2[0], p2[1], p2[2], False)]
    assert rater.current == PAIRS[3]  # the pair skipped before the undo comes back
    assert (rater.n_written, rater.n_skipped) == (3, 0)  # the undo forgot that skip too


def test_undo_repeatedly_and_with_nothing_to_undo(store):
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    assert rater.click("undo") is None and rater.progress_text == "1 of 5"
    assert rater._buttons["undo"].disabled
    rater.click("A"), rater.click("B")
    assert rater.click("undo").chosen == PAIRS[1][2]
    assert rater.click("undo").chosen == PAIRS[0][1]
    assert rater.click("undo") is None
    assert triples(store.path) == [] and rater.progress_text == "1 of 5"


def test_undo_removes_its_own_line_and_keeps_what_another_writer_appended(store):
    """Review row 43: another writer appends after the widget's click, then Undo."""
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    mine = rater.click("A")
    other = PreferenceRecord("Other prompt", "x", "y", rater="bo")
    PreferenceStore(store.path).append(other)  # a second widget (or kernel) writing to the same file
    assert rater.click("undo") == mine
    assert read_preferences(store.path) == [other] and rater.current == PAIRS[0]


def test_undo_refuses_when_its_line_is_gone(store):
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    rater.click("A")
    store.path.write_text("")  # someone emptied the file by hand
    with pytest.raises(RuntimeError, match="not undone"):
        rater.click("undo")
    assert store.path.read_text() == "" and rater.progress_text == "2 of 5"  # nothing changed


def test_progress_and_done_message(store):
    rater = PairwiseRater(PAIRS[:2], store, rater_name="ana")
    assert rater.progress_text == "1 of 2" and not rater.finished
    rater.click("A")
    rater.click("skip")
    assert rater.finished and rater.current is None and rater.progress_text == "2 of 2"
    assert "Done" in rater._status.value and "1 rated, 1 skipped" in rater._status.value
    assert all(rater._buttons[k].disabled for k in ("A", "B", "tie", "skip"))
    assert not rater._buttons["undo"].disabled
    with pytest.raises(RuntimeError, match="done"):
        rater.click("B")
    rater.click("undo")  # undo still works after the end
    assert not rater.finished and rater.current == PAIRS[0]


def test_the_buttons_do_what_click_does(store):
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    descriptions = [b.description for b in rater._buttons.values()]
    assert descriptions == ["A is better", "B is better", "Tie", "Skip", "Undo"]
    rater._buttons["B"].click()
    rater._buttons["tie"].click()
    rater._buttons["skip"].click()
    rater._buttons["undo"].click()
    assert triples(store.path) == [(PAIRS[0][0], PAIRS[0][2], PAIRS[0][1], False)]
    assert rater.progress_text == "2 of 5"
    assert "Undone" in rater._status.value


def test_responses_are_shown_escaped(store):
    rater = PairwiseRater([("<b>hi</b>", "<script>x</script>", "a & b")], store, rater_name="ana")
    assert "<script>" not in rater._side["A"].value and "&lt;script&gt;" in rater._side["A"].value
    assert "a &amp; b" in rater._side["B"].value and "&lt;b&gt;hi" in rater._prompt.value


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_blind_order_is_seeded_and_records_the_chosen_text(tmp_path, seed):
    pairs = make_pairs(load_prompts(), 30, seed=seed)
    store = PreferenceStore(tmp_path / f"blind{seed}.jsonl")
    rater = PairwiseRater(pairs, store, rater_name="ana", blind=True, seed=seed)
    assert rater.swapped == PairwiseRater(pairs, store, rater_name="x", blind=True, seed=seed).swapped
    assert 5 < sum(rater.swapped) < 25  # both orders occur
    picks = [random.Random(seed).choice("AB") for _ in pairs]
    for (prompt, a, b), swapped, pick in zip(pairs, rater.swapped, picks):
        shown = rater.current
        assert shown == ((prompt.text, b, a) if swapped else (prompt.text, a, b))
        rater.click(pick)
    # What was clicked, mapped back to the pair's own order without the widget's help:
    expected = []
    for (prompt, a, b), swapped, pick in zip(pairs, rater.swapped, picks):
        first_is_a = not swapped
        chose_first = (pick == "A") == first_is_a
        expected.append((prompt.text, a, b, False) if chose_first else (prompt.text, b, a, False))
    assert triples(store.path) == expected


def test_not_blind_keeps_the_order(store):
    rater = PairwiseRater(PAIRS, store, rater_name="ana", blind=False, seed=3)
    assert not any(rater.swapped) and rater.current == PAIRS[0]
    assert PairwiseRater(PAIRS, store, rater_name="ana", blind=True, seed=3).swapped != \
        PairwiseRater(PAIRS, store, rater_name="ana", blind=True, seed=4).swapped


def test_resume_continues_where_this_rater_stopped(store):
    first = PairwiseRater(PAIRS, store, rater_name="ana")
    first.click("A"), first.click("skip"), first.click("B")  # pairs 1 and 3 rated, 2 skipped
    again = PairwiseRater(PAIRS, store, rater_name="ana")
    assert again.resumed == 2 and again.current == PAIRS[1] and again.progress_text == "2 of 5"
    again.click("A")
    assert again.current == PAIRS[3]  # pair 3 was rated before: not shown again
    assert PairwiseRater(PAIRS, store, rater_name="bo").current == PAIRS[0]  # another rater starts at 1
    assert PairwiseRater(PAIRS, store, rater_name="ana", resume=False).current == PAIRS[0]


@pytest.mark.parametrize("kwargs, error", [
    (dict(pairs=[], rater_name="ana"), "empty"),
    (dict(pairs=PAIRS, rater_name=""), "rater_name"),
    (dict(pairs=PAIRS, rater_name="simulated"), "reserved"),
    (dict(pairs=[("p", "a")], rater_name="ana"), "pair 0"),
])
def test_bad_arguments_say_what_is_wrong(store, kwargs, error):
    with pytest.raises(ValueError, match=error):
        PairwiseRater(store=store, **kwargs)


def test_unknown_choice_and_wrong_store(store, tmp_path):
    with pytest.raises(ValueError, match="unknown choice"):
        PairwiseRater(PAIRS, store, rater_name="ana").click("C")
    with pytest.raises(TypeError, match="ScoreStore"):
        PairwiseRater(PAIRS, ScoreStore(tmp_path / "s.jsonl"), rater_name="ana")


# ------------------------------------------------------------------------------ ScoreRater
def test_score_rater_writes_scores_with_skip_and_undo(tmp_path):
    items = [(p, a) for p, a, _ in PAIRS]
    rater = ScoreRater(items, tmp_path / "scores.jsonl", rater_name="ana", source="test")
    assert [b.description for b in rater._buttons.values()] == ["1", "2", "3", "4", "5", "Skip", "Undo"]
    for choice in [5, "skip", 1, "undo", "2"]:
        rater.click(choice)
    records = read_scores(tmp_path / "scores.jsonl")
    assert [(r.prompt, r.response, r.score, r.rater, r.source) for r in records] == \
        [(items[0][0], items[0][1], 5, "ana", "test"), (items[2][0], items[2][1], 2, "ana", "test")]
    assert rater.progress_text == "4 of 5" and rater.current == items[3]
    with pytest.raises(ValueError, match="score 1-5"):
        rater.click(6)
    assert len(read_scores(tmp_path / "scores.jsonl")) == 2


def test_score_rater_needs_a_score_store(store):
    with pytest.raises(TypeError, match="ScoreStore"):
        ScoreRater([("p", "r")], store, rater_name="ana")


# ------------------------------------------------------------------------------ the mode switch
def test_simulated_mode_writes_one_record_per_pair(store):
    pairs = make_pairs(load_prompts(), 12, seed=0)
    records = rate_pairs(pairs, store, mode="simulated", simulated_rater=SimulatedRater(seed=0), source="sim")
    assert read_preferences(store.path) == records and len(records) == 12
    assert {r.rater for r in records} == {"simulated"} and {r.source for r in records} == {"sim"}
    for (prompt, a, b), r in zip(pairs, records):
        assert r.prompt == prompt.text and {r.chosen, r.rejected} == {a, b}
    # Same seed, same clicks; a noiseless rater always picks the higher gold reward.
    again = rate_pairs(pairs, PreferenceStore(store.path.with_name("again.jsonl")), mode="simulated",
                       simulated_rater=SimulatedRater(seed=0))
    assert [r.chosen for r in again] == [r.chosen for r in records]
    exact = rate_pairs(pairs, PreferenceStore(store.path.with_name("exact.jsonl")), mode="simulated",
                       simulated_rater=SimulatedRater(temperature=0))
    for (prompt, a, b), r in zip(pairs, exact):
        assert gold_reward(prompt, r.chosen) >= gold_reward(prompt, r.rejected)


def test_simulated_mode_resumes_like_the_widget(store, tmp_path):
    pairs = make_pairs(load_prompts(), 6, seed=2)
    first = rate_pairs(pairs[:4], store, mode="simulated", simulated_rater=SimulatedRater(seed=0))
    swapped = [(p, b, a) for p, a, b in pairs]                     # the same pairs, shown the other way round
    rest = rate_pairs(swapped, store, mode="simulated", simulated_rater=SimulatedRater(seed=0))
    assert len(first) == 4 and len(rest) == 2 and len(read_preferences(store.path)) == 6
    assert {(r.prompt, frozenset((r.chosen, r.rejected))) for r in rest} == \
        {(p.text, frozenset((a, b))) for p, a, b in pairs[4:]}
    assert rate_pairs(pairs, store, mode="simulated", simulated_rater=SimulatedRater(seed=0)) == []
    again = rate_pairs(pairs, store, mode="simulated", simulated_rater=SimulatedRater(seed=0), resume=False)
    assert len(again) == 6 and len(read_preferences(store.path)) == 12  # resume=False rates everything again
    other = rate_pairs(pairs, store, mode="simulated", simulated_rater=SimulatedRater(seed=0, name="classmate"))
    assert len(other) == 6                                              # another rater has rated nothing yet
    items = [(p, a) for p, a, _ in pairs]
    path = tmp_path / "scores.jsonl"
    assert len(rate_scores(items[:3], path, mode="simulated")) == 3
    assert len(rate_scores(items, path, mode="simulated")) == 3 and len(read_scores(path)) == 6


def test_human_mode_shows_the_widget_and_writes_nothing_yet(store):
    shown = []
    rater = rate_pairs(PAIRS, store, mode="human", rater_name="ana", display=shown.append)
    assert shown == [rater] and isinstance(rater, PairwiseRater) and not store.path.exists()
    bundle = rater._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "1 of 5" in bundle["text/plain"]


def test_mode_is_explicit(store):
    with pytest.raises(ValueError, match="mode"):
        rate_pairs(PAIRS, store, mode="auto")
    with pytest.raises(ValueError, match="rater_name"):
        rate_pairs(PAIRS, store, mode="human")
    with pytest.raises(TypeError):
        rate_pairs(PAIRS, store)  # no default: the notebook must say which


def test_simulated_scores(tmp_path):
    prompt = Prompt("What do you think about my plan to start a vegetable garden?", "garden", "plan")
    good = ("A vegetable garden is a good plan, since it gives you fresh food all summer. "
            "Start small and build up slowly. Good luck with your garden!")
    bad = "Whatever."
    exact = SimulatedRater(temperature=0)
    assert simulated_score(exact, prompt, good) == 5 and simulated_score(exact, prompt, bad) == 1
    assert [1 + sum(g >= c for c in SCORE_CUTS) for g in (gold_reward(prompt, good), gold_reward(prompt, bad))] \
        == [5, 1]
    items = [(p, a) for p, a, _ in make_pairs(load_prompts(), 40, seed=1)]
    path = tmp_path / "scores.jsonl"
    records = rate_scores(items, path, mode="simulated", simulated_rater=SimulatedRater(seed=1))
    assert read_scores(path) == records and len(records) == 40
    assert {r.rater for r in records} == {"simulated"} and {r.score for r in records} <= {1, 2, 3, 4, 5}
    assert len({r.score for r in records}) >= 3  # the scores spread out
    shown = []
    assert isinstance(rate_scores(items, path, mode="human", rater_name="ana", display=shown.append), ScoreRater)


# ------------------------------------------------------------------------------ Quiz
QUESTION = "What is the primary goal of RLHF?"
OPTIONS = ["To make models faster", "To align model outputs with human preferences", "To shrink the model"]


def test_quiz_feedback_right_and_wrong():
    quiz = Quiz(QUESTION, OPTIONS, OPTIONS[1], explanation="People's judgements become the reward.")
    assert quiz.check(OPTIONS[1]) == "Correct. People's judgements become the reward."
    assert quiz.check(1).startswith("Correct")
    wrong = quiz.check(OPTIONS[0])
    assert wrong.startswith("Not quite") and "Correct" not in wrong and "judgements" not in wrong
    assert quiz.check(None) == "Pick an answer first."
    assert quiz.attempts == [OPTIONS[1], OPTIONS[1], OPTIONS[0]]
    with pytest.raises(ValueError, match="not one of the options"):
        quiz.check("To make coffee")
    with pytest.raises(ValueError, match="out of range"):
        quiz.check(3)


def test_quiz_widget_gives_the_same_feedback():
    quiz = Quiz(QUESTION, OPTIONS, OPTIONS[1], explanation="Yes.")
    quiz._choice.value = OPTIONS[2]
    quiz._button.click()
    assert "Not quite" in quiz._feedback.value and "#b00" in quiz._feedback.value
    quiz._choice.value = OPTIONS[1]
    quiz._button.click()
    assert "Correct. Yes." in quiz._feedback.value and "green" in quiz._feedback.value
    bundle = quiz._repr_mimebundle_()  # headless: the question is readable as text
    assert QUESTION in bundle["text/plain"] and "(b) " + OPTIONS[1] in bundle["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_quiz_rejects_a_bad_question():
    with pytest.raises(ValueError, match="not one of the options"):
        Quiz(QUESTION, OPTIONS, "To make coffee")
    with pytest.raises(ValueError, match="at least two"):
        Quiz(QUESTION, ["only"], "only")


def test_records_are_json_lines(store):
    """The widget's file is the course's format: one JSON object a line, TRL keys first."""
    PairwiseRater(PAIRS, store, rater_name="ana").click("A")
    (line,) = store.path.read_text().splitlines()
    assert list(json.loads(line))[:3] == ["prompt", "chosen", "rejected"]


def test_quiz_refuses_a_bool():
    with pytest.raises(TypeError, match="index"):
        Quiz(QUESTION, OPTIONS, OPTIONS[1]).check(True)


# ------------------------------------------------------------------------------ phantom clicks
class Clock:
    """A stand-in for the ``time`` module in rlhf_lab.widgets: ``monotonic()`` moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(widgets, "time", fake)
    return fake


def test_a_double_click_on_a_pair_button_writes_one_record(store):
    """Review row 36: two click messages for one button, back to back."""
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    button = rater._buttons["A"]
    button.click()
    button.click()              # the second click of the double-click: the same button object
    assert triples(store.path) == [(*PAIRS[0], False)] and rater.progress_text == "2 of 5"
    rater._buttons["A"].click()  # the new item's button, a moment later: still the same double-click
    assert len(read_preferences(store.path)) == 1 and rater.n_ignored == 2


def test_on_click_twice_writes_one_record(store, tmp_path):
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    rater._on_click("A")
    rater._on_click("A")
    assert len(read_preferences(store.path)) == 1 and rater.progress_text == "2 of 5"
    scores = ScoreRater([(p, a) for p, a, _ in PAIRS], tmp_path / "s.jsonl", rater_name="ana")
    scores._on_click("5")
    scores._on_click("5")
    assert [r.score for r in read_scores(tmp_path / "s.jsonl")] == [5]


def test_a_double_click_on_a_score_button_writes_one_score(tmp_path):
    """Review row 37."""
    rater = ScoreRater([(p, a) for p, a, _ in PAIRS], tmp_path / "s.jsonl", rater_name="ana")
    button = rater._buttons["5"]
    button.click()
    button.click()
    rater._buttons["5"].click()
    assert [r.score for r in read_scores(tmp_path / "s.jsonl")] == [5] and rater.progress_text == "2 of 5"


def test_old_buttons_never_act_and_a_later_press_does(store, clock):
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    first = dict(rater._buttons)
    first["B"].click()
    first["undo"].click()   # any button of pair 1, clicked after pair 2 is up: ignored, undo too
    first["tie"].click()
    assert len(read_preferences(store.path)) == 1 and rater.progress_text == "2 of 5"
    assert "ignored" in rater._status.value and "Saved pair 1" in rater._status.value
    clock.now += 0.2
    rater._buttons["B"].click()           # within 0.3 s of the last B: the same double-click
    assert len(read_preferences(store.path)) == 1
    clock.now += 0.5
    rater._buttons["B"].click()           # a person who read pair 2 and clicked B
    assert triples(store.path)[1] == (PAIRS[1][0], PAIRS[1][2], PAIRS[1][1], False)
    assert rater.click("A") is not None   # code clicks are never debounced


def test_buttons_are_rebuilt_per_item_and_the_old_ones_closed(store):
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    gen1 = list(rater._buttons.values())
    rater.click("A")
    gen2 = list(rater._buttons.values())
    assert not set(map(id, gen1)) & set(map(id, gen2)) and list(rater._button_box.children) == gen2
    rater.click("B")
    assert all(b.comm is None for b in gen1)      # closed two items later
    assert all(b.comm is not None for b in gen2)  # the previous item's: kept a while, for a late click


# ------------------------------------------------------------------------------ keys
def test_keys_rate_the_pair_on_screen(store, clock):
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    rater._keys.value = "a"
    assert rater._keys.value == "" and triples(store.path) == [(*PAIRS[0], False)]
    rater._keys.value = "b"               # typed at once: pair 2 cannot have been read yet
    assert len(read_preferences(store.path)) == 1 and rater.n_ignored == 1 and rater._keys.value == ""
    for key in "B", "t", "s", "u", "x":
        clock.now += 1
        rater._keys.value = key
    p0, p1, p2 = PAIRS[:3]
    assert triples(store.path) == [(*p0, False), (p1[0], p1[2], p1[1], False)]  # tie, skip, then undo
    assert rater.progress_text == "3 of 5" and "does nothing" in rater._status.value
    clock.now += 1
    rater._keys.value = "xa"              # several characters at once: the last one typed counts
    assert triples(store.path)[-1] == (*p2, False)


def test_score_keys(tmp_path, clock):
    rater = ScoreRater([(p, a) for p, a, _ in PAIRS], tmp_path / "s.jsonl", rater_name="ana")
    assert "1 / 2 / 3 / 4 / 5 / s / u" in rater._keys.placeholder
    for key in "4", "s", "2", "u", "5", "9":
        rater._keys.value = key
        clock.now += 1
    assert [r.score for r in read_scores(tmp_path / "s.jsonl")] == [4, 5]
    assert rater.progress_text == "4 of 5" and "does nothing" in rater._status.value


# ------------------------------------------------------------------------------ what each record says
def test_shown_first_and_seconds(tmp_path, clock):
    pairs = make_pairs(load_prompts(), 20, seed=4)
    store = PreferenceStore(tmp_path / "b.jsonl")
    rater = PairwiseRater(pairs, store, rater_name="ana", blind=True, seed=4)
    rng = random.Random(4)
    picks = [rng.choice(["A", "B", "tie"]) for _ in pairs]
    for k, pick in enumerate(picks):
        clock.now += 2.5
        _, shown_a, _ = rater.current
        record = rater.click(pick)
        assert record.shown_first == ("chosen" if record.chosen == shown_a else "rejected")
        assert record.shown_first == ("rejected" if pick == "B" else "chosen")
        assert record.seconds == pytest.approx(2.5)
    assert {r.shown_first for r in read_preferences(store.path)} == {"chosen", "rejected"}
    scores = ScoreRater([(p, a) for p, a, _ in pairs], tmp_path / "s.jsonl", rater_name="ana")
    clock.now += 4
    assert scores.click(3).seconds == pytest.approx(4)


def test_simulated_records_say_what_was_shown_first(tmp_path):
    pairs = make_pairs(load_prompts(), 30, seed=5)
    plain = rate_pairs(pairs, tmp_path / "plain.jsonl", mode="simulated", simulated_rater=SimulatedRater(seed=0))
    assert [r.shown_first for r in plain] == ["chosen" if r.chosen == a else "rejected"
                                              for r, (_, a, _) in zip(plain, pairs)]
    assert all(r.seconds is None for r in plain)
    blind = rate_pairs(pairs, tmp_path / "blind.jsonl", mode="simulated", simulated_rater=SimulatedRater(seed=0),
                       blind=True, seed=5)
    swapped = PairwiseRater(pairs, tmp_path / "x.jsonl", rater_name="x", blind=True, seed=5).swapped
    for r, (_, a, b), swap in zip(blind, pairs, swapped):
        assert r.shown_first == ("chosen" if r.chosen == (b if swap else a) else "rejected")
    assert {r.shown_first for r in blind} == {"chosen", "rejected"}
    scores = rate_scores([(p, a) for p, a, _ in pairs], tmp_path / "s.jsonl", mode="simulated")
    assert all(r.seconds is None for r in scores)


# ------------------------------------------------------------------------------ rubric and reveal
def test_rubric_shown_by_default(store, tmp_path):
    assert 4 <= len(RUBRIC) <= 7 and all(len(line) < 140 for line in RUBRIC)
    rubric = " ".join(RUBRIC).lower()
    for part in ("answer", "topic", "advice", "polite", "rude", "cut off", "twice", "greeting", "words"):
        assert part in rubric, part  # each part of the gold reward, in plain words
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    assert "What makes a good reply" in rater._rubric.value and "rude" in rater._rubric.value
    assert PairwiseRater(PAIRS, store, rater_name="ana", rubric=False)._rubric.value == ""
    scores = ScoreRater([("p", "r")], tmp_path / "s.jsonl", rater_name="ana")
    assert "1 = poor" in scores._rubric.value and "rude" in scores._rubric.value
    assert ScoreRater([("p", "r")], tmp_path / "s.jsonl", rater_name="ana", rubric=False)._rubric.value == ""


def test_reveal_is_off_by_default_and_shows_gold_and_the_reward_model(store, tmp_path):
    pairs = make_pairs(load_prompts(), 3, seed=0)
    quiet = PairwiseRater(pairs, store, rater_name="ana")
    quiet.click("A")
    assert quiet._reveal.value == ""
    prompt, a, b = pairs[0]
    rater = PairwiseRater(pairs, tmp_path / "r.jsonl", rater_name="ana", reveal=True,
                          score_fn=lambda p, r: 0.25 if r == a else -0.5)
    assert rater._reveal.value == ""            # nothing before the click
    rater.click("B")
    text = rater._reveal.value
    assert f"A {gold_reward(prompt, a):+.2f}, B {gold_reward(prompt, b):+.2f}" in text and "you chose B" in text
    assert "Reward model: A +0.25, B -0.50" in text
    rater.click("skip")
    assert rater._reveal.value == ""
    scores = ScoreRater([(prompt, a)], tmp_path / "s.jsonl", rater_name="ana", reveal=True)
    scores.click(4)
    assert f"gold reward {gold_reward(prompt, a):+.2f}" in scores._reveal.value and "you gave 4" in scores._reveal.value
    with pytest.raises(ValueError, match="reveal=True"):
        PairwiseRater(pairs, store, rater_name="ana", score_fn=lambda p, r: 0.0)
    with pytest.raises(TypeError, match="score_fn"):
        ScoreRater([(prompt, a)], tmp_path / "s.jsonl", rater_name="ana", reveal=True, score_fn=3)


# ------------------------------------------------------------------------------ ipywidgets 7 and 8, headless
def test_the_display_bundle_without_repr_mimebundle(store):
    """ipywidgets 7 widgets have no ``_repr_mimebundle_`` (they display through ``_ipython_display_``)."""

    class V7Box:
        model_id = "abc123"
        displayed = 0

        def _handle_displayed(self, **kwargs):
            self.displayed += 1

    box = V7Box()
    bundle = widgets._widget_bundle(box, "text")
    assert bundle == {"text/plain": "text", "application/vnd.jupyter.widget-view+json":
                      {"version_major": 2, "version_minor": 0, "model_id": "abc123"}} and box.displayed == 1
    rater = PairwiseRater(PAIRS, store, rater_name="ana")
    # IPython asks with include / exclude (ipywidgets 7's Box must not get them: a notebook failed on that)
    view = rater._repr_mimebundle_(include=None, exclude=None)["application/vnd.jupyter.widget-view+json"]
    quiz = Quiz("Which?", ["this", "that"], answer="this")
    assert "application/vnd.jupyter.widget-view+json" in quiz._repr_mimebundle_(include=None, exclude=None)
    assert view["model_id"] == rater.widget.model_id
    assert repr(rater) == f"PairwiseRater(1 of 5, saving to {store.path})"  # review row 49: readable headless


# ------------------------------------------------------------------------------ rate_blind, layering
def test_rate_blind_lives_here_and_evaluation_imports_no_widget():
    source = Path(__file__).parent.parent / "rlhf_lab" / "evaluation.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom):
            imported |= {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert not [m for m in imported if "widgets" in m]
    assert "def rate_blind" not in source.read_text()


def test_rate_blind_shows_the_pairs_as_shuffled(store):
    class Blind:  # what rate_blind reads of evaluation.BlindPairs
        pairs = [(p, b, a) for p, a, b in PAIRS]

    rater = rate_blind(Blind(), store, mode="human", rater_name="ana", display=None)
    assert isinstance(rater, PairwiseRater) and rater.current == Blind.pairs[0] and not any(rater.swapped)
    records = rate_blind(Blind(), store, mode="simulated", simulated_rater=SimulatedRater(seed=0))
    assert len(records) == 5 and rate_blind(Blind(), store, mode="simulated") == []
