"""Widgets of the course: a quiz, and the raters that turn a person's clicks into preference data.

- ``Quiz``: a multiple-choice question with immediate feedback (notebook 01 and later).
- ``PairwiseRater``: a prompt and two responses side by side, A | B; you click which is better.
- ``ScoreRater``: one response at a time, scored 1-5.
- ``rate_pairs`` / ``rate_scores``: one call for both worlds. ``mode="human"`` shows the widget;
  ``mode="simulated"`` lets the simulated rater of ``rlhf_lab.world`` answer instead and writes to the
  same file, so a notebook also runs headless (papermill, CI). The switch is always an explicit
  argument: nothing guesses whether a person is at the keyboard.
- ``rate_blind``: rate ``evaluation.blind_pairs`` (two policies' replies, sides shuffled) the same way.

Every click goes straight to the store (``PreferenceStore.append`` writes one JSON line, flushes and
fsyncs), so a crash or a kernel restart loses nothing already clicked. "Skip" writes nothing;
"Undo" deletes the last record this widget wrote and shows its item again.

Keyboard: every control is a real HTML button with a plain-words label ("A is better", "Tie", ...)
and a tooltip. Tab / Shift+Tab move between them, Enter or Space presses the focused one. There are
no single-key shortcuts on purpose: in Jupyter those keys belong to the notebook (``a`` / ``b``
insert cells in command mode).

The widgets can be driven from code with ``.click(...)``, exactly as the buttons drive them (tests).
"""
from __future__ import annotations

import html
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Union

import ipywidgets as w

from rlhf_lab.preferences import PreferenceRecord, PreferenceStore, ScoreRecord, ScoreStore
from rlhf_lab import world
from rlhf_lab.world import Prompt, SimulatedRater, gold_reward, prompt_text

if TYPE_CHECKING:  # only for the type hint: importing evaluation would pull in torch
    from rlhf_lab.evaluation import BlindPairs

#: A prompt as the raters take it: a ``world.Prompt`` or its plain text.
PromptLike = Union[Prompt, str]
#: What ``rate_pairs`` rates: ``(prompt, response_1, response_2)``, as ``world.make_pairs`` returns.
Pair = tuple[PromptLike, str, str]
#: What ``rate_scores`` rates: ``(prompt, response)``.
Item = tuple[PromptLike, str]
#: Where ratings go: an open store (``PreferenceStore`` for pairs, ``ScoreStore`` for scores) or the
#: path of its JSONL file.
StoreLike = Union[PreferenceStore, str, Path]

_BOX = "border:1px solid #bbb; border-radius:4px; padding:6px 10px; white-space:pre-wrap; margin:0"


# --------------------------------------------------------------------------------------------- quiz
class Quiz:
    """A multiple-choice question with immediate feedback.

    ``display(quiz)`` (or leaving it as the last expression of a cell) shows the question, the options
    as radio buttons and a "Check" button. ``quiz.check(choice)`` returns the same feedback as text, so
    the quiz also works headless; where no widget can render, the question and options show as text.

    Args:
        question: the question, plain text.
        options: the possible answers, plain text.
        answer: the right option (its text).
        explanation: shown with a right answer: why it is right.
        hint: shown with a wrong answer, to point the way without giving the answer.
    """

    def __init__(self, question: str, options: Sequence[str], answer: str, explanation: str = "",
                 hint: str = "Try again.") -> None:
        options = list(options)
        if len(options) < 2:
            raise ValueError(f"a quiz needs at least two options, got {options}")
        if len(set(options)) != len(options):
            raise ValueError(f"the options of a quiz must differ, got {options}")
        if answer not in options:
            raise ValueError(f"the answer {answer!r} is not one of the options {options}")
        self.question, self.options, self.answer = question, options, answer
        self.explanation, self.hint = explanation, hint
        self.attempts: list[str] = []  # every choice checked, in order
        self._choice = w.RadioButtons(options=options, value=None, layout=w.Layout(width="auto"))
        self._button = w.Button(description="Check", tooltip="Check your answer")
        self._feedback = w.HTML()
        self._button.on_click(lambda _: self._show(self._choice.value))
        self.widget = w.VBox([w.HTML(f"<b>{html.escape(question)}</b>"), self._choice, self._button,
                              self._feedback])

    def check(self, choice: str | int | None) -> str:
        """Feedback for ``choice`` (an option's text, or its 0-based index): whether it is right, and why."""
        if choice is None:
            return "Pick an answer first."
        if isinstance(choice, int):
            if not 0 <= choice < len(self.options):
                raise ValueError(f"option index {choice} is out of range: the quiz has {len(self.options)} options")
            choice = self.options[choice]
        if choice not in self.options:
            raise ValueError(f"{choice!r} is not one of the options {self.options}")
        self.attempts.append(choice)
        if choice == self.answer:
            return f"Correct. {self.explanation}".strip()
        return f"Not quite: {choice!r} is not it. {self.hint}".strip()

    def _show(self, choice: str | None) -> None:
        text = self.check(choice)
        color = "green" if choice == self.answer else "#b00"
        self._feedback.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    def __repr__(self) -> str:
        letters = "abcdefghijklmnopqrstuvwxyz"
        lines = [self.question] + [f"  ({letters[i]}) {o}" for i, o in enumerate(self.options)]
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs):
        """The widget where one can render; the question and options as text everywhere else."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle


# ------------------------------------------------------------------------------------ the raters


def _open_store(store: StoreLike, kind: type[PreferenceStore]) -> PreferenceStore:
    """``store`` itself if it is a ``kind``, else a ``kind`` on that path."""
    if isinstance(store, PreferenceStore):
        if store.record_type is not kind.record_type:
            raise TypeError(f"this rater writes {kind.record_type.__name__}s: give it a {kind.__name__} "
                            f"(or a path), not a {type(store).__name__}")
        return store
    return kind(store)


def _check_rater_name(rater_name: str) -> str:
    if not isinstance(rater_name, str) or not rater_name.strip():
        raise ValueError("rater_name must be a non-empty name (it goes into every record's 'rater' field)")
    if rater_name.strip() == "simulated":
        raise ValueError("rater_name 'simulated' is reserved for the simulated rater; pick your own name")
    return rater_name.strip()


class _Rater:
    """What both raters share: the items, the store, where we are, what was written, undo.

    Subclasses fill ``_key_of`` (which item a stored record rates, for resume), ``_show_item`` (draw
    an item) and ``click``. ``_history`` holds one entry per step forward: ``(item index, record
    written, or None for a skip)``; ``_done`` the indices rated (now or, with resume, before).
    """

    noun = "item"
    store_type: type[PreferenceStore] = PreferenceStore

    def __init__(self, n_items: int, keys: list[tuple], store: StoreLike, rater_name: str,
                 source: str | None, resume: bool) -> None:
        if n_items == 0:
            raise ValueError(f"nothing to rate: the list of {self.noun}s is empty")
        self.store = _open_store(store, self.store_type)
        self.rater_name = _check_rater_name(rater_name)
        self.source = source
        self.n = n_items
        self._done: set[int] = set()
        if resume:  # keys: one identity per item, compared with _key_of(record) of the stored records
            seen = {self._key_of(r) for r in self.store.records() if getattr(r, "rater", None) == self.rater_name}
            self._done = {i for i, k in enumerate(keys) if k in seen}
        self.resumed = len(self._done)  # items found already rated in the store when the widget opened
        self._history: list[tuple[int, object | None]] = []
        self._pos = self._next_open(0)
        self._status = w.HTML()
        self._status.add_class("rlhf-status")  # CSS classes: hooks for the browser test
        self._progress_label = w.HTML()
        self._progress_label.add_class("rlhf-progress")
        self._bar = w.IntProgress(min=0, max=self.n, layout=w.Layout(width="160px"))
        self._buttons: dict[str, w.Button] = {}

    # -- to fill in subclasses
    def _key_of(self, record) -> tuple | None:
        raise NotImplementedError

    def _show_item(self, i: int) -> None:
        raise NotImplementedError

    # -- navigation
    def _next_open(self, i: int) -> int:
        while i < self.n and i in self._done:
            i += 1
        return i

    @property
    def finished(self) -> bool:
        """True once every item was rated or skipped."""
        return self._pos >= self.n

    @property
    def position(self) -> int:
        """0-based index of the item on screen (``n`` once finished)."""
        return self._pos

    @property
    def progress_text(self) -> str:
        """The progress counter as shown: ``"k of n"``, k the 1-based number of the item on screen."""
        return f"{min(self._pos + 1, self.n)} of {self.n}"

    @property
    def n_written(self) -> int:
        """Records this widget wrote and did not undo."""
        return sum(rec is not None for _, rec in self._history)

    @property
    def n_skipped(self) -> int:
        """Items this widget skipped (a skip before an undone rating is forgotten with it)."""
        return sum(rec is None for _, rec in self._history)

    def _write(self, record) -> None:
        self.store.append(record)
        self._history.append((self._pos, record))
        self._done.add(self._pos)
        self._pos = self._next_open(self._pos + 1)

    def _skip(self) -> None:
        self._history.append((self._pos, None))
        self._pos = self._next_open(self._pos + 1)

    def _undo(self):
        """Delete the last record this widget wrote and go back to its item; skips after it are forgotten."""
        writes = [k for k, (_, rec) in enumerate(self._history) if rec is not None]
        if not writes:
            self._say("Nothing to undo: this widget has not written a rating yet.")
            return None
        k = writes[-1]
        i, rec = self._history[k]
        records = self.store.records()
        if not records or records[-1] != rec:
            raise RuntimeError(f"not undone: the last line of {self.store.path} is not the last rating of this "
                               "widget (someone else wrote to the file since)")
        removed = self.store.undo_last()
        del self._history[k:]
        self._done.discard(i)
        self._pos = i
        return removed

    def click(self, choice) -> object | None:
        """Press a button from code. Returns the record written (or removed, for undo), None for skip."""
        raise NotImplementedError

    # -- drawing
    def _say(self, text: str, color: str = "#333") -> None:
        self._status.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    def _refresh(self, message: str | None = None) -> None:
        self._bar.value = len(self._done)
        for name, button in self._buttons.items():
            button.disabled = (name == "undo" and self.n_written == 0) or (name != "undo" and self.finished)
        if self.finished:
            self._progress_label.value = f"<b>{self.progress_text}</b> · done"
            self._show_item(-1)
            self._say(f"Done, thank you! {self.n_written} rated, {self.n_skipped} skipped"
                      + (f", {self.resumed} rated earlier" if self.resumed else "")
                      + f". Every rating is saved in {self.store.path}.", "green")
        else:
            self._progress_label.value = f"<b>{self.progress_text}</b>"
            self._show_item(self._pos)
            if message is not None:
                self._say(message)

    def _button(self, key: str, description: str, tooltip: str, style: str = "") -> w.Button:
        button = w.Button(description=description, tooltip=tooltip, button_style=style,
                          layout=w.Layout(width="auto"))
        button.on_click(lambda _b: self._on_click(key))
        self._buttons[key] = button
        return button

    def _on_click(self, key: str) -> None:
        # Errors in a widget callback would vanish into the log console: show them on the status line.
        try:
            self.click(key)
        except Exception as err:  # noqa: BLE001 - shown to the person clicking, then re-raised to the log
            self._say(f"Error: {err}", "#b00")
            raise

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = f"{type(self).__name__}({self.progress_text}, saving to {self.store.path})"
        return bundle


class PairwiseRater(_Rater):
    """Rate pairs of responses by hand: which of A and B answers the prompt better?

    Buttons: "A is better", "B is better", "Tie", "Skip", "Undo"; a progress counter "k of n" and a
    status line. Each rating is appended to the store at once as a ``PreferenceRecord`` with
    ``rater=rater_name`` and ``source=source``; "Tie" writes ``tie=True`` (chosen = A and rejected = B
    as shown, the file format's rule for ties); "Skip" writes nothing; "Undo" deletes the last record this widget wrote
    and shows that pair again.

    Args:
        pairs: ``(prompt, response_1, response_2)`` triples, as ``world.make_pairs`` returns.
        store: a ``PreferenceStore`` or the path of its JSONL file.
        rater_name: your name; goes into every record's ``rater`` field.
        source: a label stored with every record (which data set or comparison these pairs are).
        blind: show each pair's responses in a random order (seeded), so that neither position nor
            origin can be guessed; used to compare two policies blind. Records name the chosen text
            itself, so they are right whatever the order on screen.
        seed: seed of that random order.
        resume: pairs this rater already rated in the store are not shown again (reopening the
            notebook continues where you stopped). ``False`` shows every pair.
    """

    noun = "pair"

    def __init__(self, pairs: Sequence[Pair], store: StoreLike, *, rater_name: str, source: str | None = None,
                 blind: bool = False, seed: int = 0, resume: bool = True) -> None:
        self.pairs: list[tuple[str, str, str]] = []
        for i, pair in enumerate(pairs):
            if len(pair) != 3 or not all(isinstance(r, str) for r in pair[1:]):
                raise ValueError(f"pair {i} must be (prompt, response, response) with str responses, got {pair!r}")
            self.pairs.append((prompt_text(pair[0]), pair[1], pair[2]))
        rng = random.Random(seed)
        #: swapped[i]: pair i shows its second response as A (only ever True when blind)
        self.swapped = [bool(blind) and rng.random() < 0.5 for _ in self.pairs]
        keys = [(p, frozenset((a, b))) for p, a, b in self.pairs]
        super().__init__(len(self.pairs), keys, store, rater_name, source, resume)
        self._prompt = w.HTML()
        self._side = {s: w.HTML(layout=w.Layout(width="50%")) for s in "AB"}
        buttons = [self._button("A", "A is better", "The left response (A) answers better", "info"),
                   self._button("B", "B is better", "The right response (B) answers better", "info"),
                   self._button("tie", "Tie", "Both are equally good (or equally bad)"),
                   self._button("skip", "Skip", "Do not rate this pair; nothing is saved"),
                   self._button("undo", "Undo", "Delete your last rating and show that pair again", "warning")]
        self.widget = w.VBox([w.HBox([self._progress_label, self._bar]), self._prompt,
                              w.HBox([self._side["A"], self._side["B"]]), w.HBox(buttons), self._status])
        self._refresh("Which response answers the prompt better?")

    def _key_of(self, record) -> tuple | None:
        return _record_key(record) if isinstance(record, PreferenceRecord) else None

    @property
    def current(self) -> tuple[str, str, str] | None:
        """``(prompt, text shown as A, text shown as B)``; None once finished."""
        if self.finished:
            return None
        prompt, a, b = self.pairs[self._pos]
        return (prompt, b, a) if self.swapped[self._pos] else (prompt, a, b)

    def _show_item(self, i: int) -> None:
        if i < 0:
            self._prompt.value = ""
            for side in self._side.values():
                side.value = ""
            return
        prompt, a_text, b_text = self.current
        self._prompt.value = f"<p><b>Prompt</b></p><p style='{_BOX}'>{html.escape(prompt)}</p>"
        for side, text in (("A", a_text), ("B", b_text)):
            self._side[side].value = f"<p><b>{side}</b></p><p style='{_BOX}'>{html.escape(text)}</p>"

    def click(self, choice: Literal["A", "B", "tie", "skip", "undo"]) -> PreferenceRecord | None:
        """Press a button from code: "A", "B", "tie", "skip" or "undo" (case-insensitive).

        Returns the record written ("A", "B", "tie"), the record removed ("undo"), or None ("skip",
        or "undo" with nothing to undo).
        """
        key = {"a": "A", "b": "B", "tie": "tie", "skip": "skip", "undo": "undo"}.get(str(choice).strip().lower())
        if key is None:
            raise ValueError(f"unknown choice {choice!r}: use 'A', 'B', 'tie', 'skip' or 'undo'")
        if key == "undo":
            removed = self._undo()
            if removed is not None:
                self._refresh(f"Undone: pair {self._pos + 1} is back; rate it again.")
            return removed
        if self.finished:
            raise RuntimeError(f"all {self.n} pairs are done; 'undo' is the only button left")
        n_pair = self._pos + 1
        if key == "skip":
            self._skip()
            self._refresh(f"Skipped pair {n_pair}.")
            return None
        prompt, a_text, b_text = self.current
        chosen, rejected = (b_text, a_text) if key == "B" else (a_text, b_text)  # a tie keeps A, B
        record = PreferenceRecord(prompt=prompt, chosen=chosen, rejected=rejected, rater=self.rater_name,
                                  tie=key == "tie", source=self.source)
        self._write(record)
        self._refresh(f"Saved pair {n_pair}: " + ("tie." if key == "tie" else f"{key} is better."))
        return record


class ScoreRater(_Rater):
    """Score responses one at a time from 1 (poor) to 5 (excellent).

    Buttons "1" to "5", "Skip", "Undo", a progress counter "k of n" and a status line. Each score is
    appended to the store at once as a ``ScoreRecord``; Skip and Undo work as in ``PairwiseRater``.

    Args:
        items: ``(prompt, response)`` pairs.
        store: a ``ScoreStore`` or the path of its JSONL file.
        rater_name: your name; goes into every record's ``rater`` field.
        source: a label stored with every record.
        resume: responses this rater already scored in the store are not shown again.
    """

    noun = "response"
    store_type = ScoreStore
    LABELS = {1: "poor", 2: "weak", 3: "acceptable", 4: "good", 5: "excellent"}

    def __init__(self, items: Sequence[Item], store: StoreLike, *, rater_name: str, source: str | None = None,
                 resume: bool = True) -> None:
        self.items: list[tuple[str, str]] = []
        for i, item in enumerate(items):
            if len(item) != 2 or not isinstance(item[1], str):
                raise ValueError(f"item {i} must be (prompt, response) with a str response, got {item!r}")
            self.items.append((prompt_text(item[0]), item[1]))
        super().__init__(len(self.items), list(self.items), store, rater_name, source, resume)
        self._prompt = w.HTML()
        self._response = w.HTML()
        buttons = [self._button(str(s), str(s), f"{s} = {label}", "info") for s, label in self.LABELS.items()]
        buttons += [self._button("skip", "Skip", "Do not score this response; nothing is saved"),
                    self._button("undo", "Undo", "Delete your last score and show that response again", "warning")]
        self.widget = w.VBox([w.HBox([self._progress_label, self._bar]), self._prompt, self._response,
                              w.HBox(buttons), self._status])
        self._refresh("How good is this response? 1 = poor, 5 = excellent.")

    def _key_of(self, record) -> tuple | None:
        return _record_key(record) if isinstance(record, ScoreRecord) else None

    @property
    def current(self) -> tuple[str, str] | None:
        """``(prompt, response)`` on screen; None once finished."""
        return None if self.finished else self.items[self._pos]

    def _show_item(self, i: int) -> None:
        if i < 0:
            self._prompt.value = self._response.value = ""
            return
        prompt, response = self.items[i]
        self._prompt.value = f"<p><b>Prompt</b></p><p style='{_BOX}'>{html.escape(prompt)}</p>"
        self._response.value = f"<p><b>Response</b></p><p style='{_BOX}'>{html.escape(response)}</p>"

    def click(self, choice: int | str) -> ScoreRecord | None:
        """Press a button from code: a score 1-5 (int or str), "skip" or "undo".

        Returns the record written (a score), the record removed ("undo"), or None ("skip").
        """
        key = str(choice).strip().lower()
        if key == "undo":
            removed = self._undo()
            if removed is not None:
                self._refresh(f"Undone: response {self._pos + 1} is back; score it again.")
            return removed
        if key != "skip" and key not in {"1", "2", "3", "4", "5"}:
            raise ValueError(f"unknown choice {choice!r}: use a score 1-5, 'skip' or 'undo'")
        if self.finished:
            raise RuntimeError(f"all {self.n} responses are done; 'undo' is the only button left")
        n_item = self._pos + 1
        if key == "skip":
            self._skip()
            self._refresh(f"Skipped response {n_item}.")
            return None
        prompt, response = self.items[self._pos]
        record = ScoreRecord(prompt=prompt, response=response, score=int(key), rater=self.rater_name,
                             source=self.source)
        self._write(record)
        self._refresh(f"Saved response {n_item}: score {key}.")
        return record


# ------------------------------------------------------------------------------- the mode switch
SCORE_CUTS = world.SCORE_CUTS   # kept here for code written against earlier versions


def simulated_score(rater: SimulatedRater, prompt: PromptLike, response: str) -> int:
    """``rater.score(prompt, response)``: a 1-5 score from the simulated rater (see ``SimulatedRater.score``)."""
    return rater.score(prompt, response)


Mode = Literal["human", "simulated"]


def _check_mode(mode: str) -> None:
    if mode not in ("human", "simulated"):
        raise ValueError(f"mode must be 'human' (show the widget) or 'simulated' (the simulated rater answers), "
                         f"got {mode!r}")


def _show(widget) -> None:
    from IPython.display import display
    display(widget)


def _record_key(record: PreferenceRecord | ScoreRecord) -> tuple:
    """What a record rates, the identity the raters resume by: (prompt, {the two responses}) for a preference
    (the side order it was shown in does not matter), (prompt, response) for a score."""
    if isinstance(record, PreferenceRecord):
        return (record.prompt, frozenset((record.chosen, record.rejected)))
    return (record.prompt, record.response)


def _rated(store, rater: str, kind: type) -> set[tuple]:
    """The identities (:func:`_record_key`) of the items of type ``kind`` that ``rater`` already rated in ``store``."""
    return {_record_key(r) for r in store.records() if isinstance(r, kind) and r.rater == rater}


def rate_pairs(pairs: Sequence[Pair], store: StoreLike, *, mode: Mode, rater_name: str | None = None,
               simulated_rater: SimulatedRater | None = None, source: str | None = None, blind: bool = False,
               seed: int = 0, resume: bool = True, display: Callable[[object], None] | None = _show
               ) -> PairwiseRater | list[PreferenceRecord]:
    """Rate ``pairs`` by hand or by the simulated rater; either way the records land in ``store``.

    Args:
        pairs: ``(prompt, response_1, response_2)`` triples, as ``world.make_pairs`` returns.
        store: a ``PreferenceStore`` or the path of its JSONL file (appended to, never truncated).
        mode: ``"human"`` displays a ``PairwiseRater`` and returns it (ratings arrive as you click);
            ``"simulated"`` has ``simulated_rater`` rate every pair now and returns its records.
        rater_name: your name (human mode; required there).
        simulated_rater: the rater of simulated mode; default ``world.SimulatedRater()``. Its records
            carry its own name (``"simulated"`` by default).
        source: a label stored with every record.
        blind, seed: human mode only: see ``PairwiseRater``.
        resume: pairs this rater already rated in the store are not rated again (both modes; in simulated
            mode "this rater" is ``simulated_rater.name``). A pair is known by its prompt and its set of
            two responses, so the order they were shown in does not matter.
        display: how human mode shows the widget (default ``IPython.display.display``; None: don't).
    """
    _check_mode(mode)
    if mode == "human":
        if rater_name is None:
            raise ValueError("mode='human' needs rater_name=<your name>")
        rater = PairwiseRater(pairs, store, rater_name=rater_name, source=source, blind=blind, seed=seed,
                              resume=resume)
        if display is not None:
            display(rater)
        return rater
    store = _open_store(store, PreferenceStore)
    simulated_rater = simulated_rater or SimulatedRater()
    done = _rated(store, simulated_rater.name, PreferenceRecord) if resume else set()
    records = []
    for prompt, a, b in pairs:
        if (prompt_text(prompt), frozenset((a, b))) in done:
            continue
        record = simulated_rater.rate(prompt, a, b, source=source)
        store.append(record)
        records.append(record)
    return records


def rate_scores(items: Sequence[Item], store: StoreLike, *, mode: Mode, rater_name: str | None = None,
                simulated_rater: SimulatedRater | None = None, source: str | None = None, resume: bool = True,
                display: Callable[[object], None] | None = _show) -> ScoreRater | list[ScoreRecord]:
    """Score ``items`` by hand (``mode="human"``: a ``ScoreRater``) or by the simulated rater.

    Arguments as in ``rate_pairs``; ``items`` are ``(prompt, response)`` pairs and ``store`` a
    ``ScoreStore`` or a path. In simulated mode the scores come from ``simulated_rater.score``; with
    ``resume`` (both modes) responses this rater already scored in the store are not scored again.
    """
    _check_mode(mode)
    if mode == "human":
        if rater_name is None:
            raise ValueError("mode='human' needs rater_name=<your name>")
        rater = ScoreRater(items, store, rater_name=rater_name, source=source, resume=resume)
        if display is not None:
            display(rater)
        return rater
    store = _open_store(store, ScoreStore)
    simulated_rater = simulated_rater or SimulatedRater()
    done = _rated(store, simulated_rater.name, ScoreRecord) if resume else set()
    records = []
    for prompt, response in items:
        if (prompt_text(prompt), response) in done:
            continue
        record = ScoreRecord(prompt=prompt_text(prompt), response=response,
                             score=simulated_rater.score(prompt, response), rater=simulated_rater.name,
                             source=source)
        store.append(record)
        records.append(record)
    return records


def rate_blind(blind: BlindPairs, store: StoreLike, *, mode: Mode, rater_name: str | None = None,
               simulated_rater: SimulatedRater | None = None, source: str | None = None,
               display: Callable[[object], None] | None = _show) -> PairwiseRater | list[PreferenceRecord]:
    """Rate ``evaluation.blind_pairs`` by hand (``mode="human"``: a ``PairwiseRater``) or by the simulated rater.

    The pairs are shown as ``blind_pairs`` shuffled them (its first text as A), so neither side nor origin
    gives a policy away, and the gold reward is never revealed. Ratings are appended to ``store`` (a
    ``PreferenceStore`` or the path of its JSONL file), never rewritten. Resumes: pairs this rater already
    rated in the store are not asked again. Returns the widget (human) or the new records (simulated; []
    when every pair was rated already). ``evaluation.unblind`` turns the records into a win rate.
    Other arguments as in ``rate_pairs``.
    """
    return rate_pairs(blind.pairs, store, mode=mode, rater_name=rater_name, simulated_rater=simulated_rater,
                      source=source, blind=False, resume=True, display=display)
