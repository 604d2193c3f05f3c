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
"Undo" removes the last record this widget wrote (``PreferenceStore.undo``: only that line, even if
others wrote to the file since) and shows its item again.

What the raters do, as annotation tools (Argilla, Label Studio) do:

- a short **rubric** (``RUBRIC``, from the parts of ``world.gold_reward``) above the items;
- **sides shuffled** per pair with ``blind=True`` (seeded); each record says which reply was shown
  first in ``shown_first``, so position bias can be measured later;
- the **seconds** each item was on screen before the click, in ``seconds``;
- **keyboard shortcuts** that only act while the widget has focus: click the small "keys" box, then
  press ``a`` / ``b`` / ``t`` (tie) / ``s`` (skip) / ``u`` (undo), or ``1``-``5`` / ``s`` / ``u`` for
  scores. They go through a text box on purpose: a key typed into a text field never reaches
  JupyterLab's notebook shortcuts (``a`` / ``b`` insert cells in command mode), and no extra package
  is needed. Every button is also a real HTML button (Tab, then Enter or Space);
- an optional **reveal** after each click (``reveal=True``): the gold reward of what was rated, and the
  reward model's score when a ``score_fn`` is given. Off by default: seeing the answer changes how
  people rate, so leave it off when the ratings are data.

Phantom clicks cannot happen: a double-click sends two click messages before the page hears back,
so the buttons are rebuilt for every item shown and a button only acts for the item it was shown
with; a second press of the same button within ``debounce_s`` (0.3 s) is ignored too, and so is a
key pressed within that time of the previous action (the next item cannot have been read yet).

Works with ipywidgets 7 (Colab ships 7.7.1) and 8. The widgets can be driven from code with
``.click(...)`` (tests); that path has no debounce.
"""
from __future__ import annotations

import html
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Union

import ipywidgets as w

from rlhf_lab import world
from rlhf_lab.preferences import PreferenceRecord, PreferenceStore, ScoreRecord, ScoreStore
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
#: ``score_fn(prompt_text, response) -> float``: a reward model's score, shown by ``reveal=True``.
ScoreFn = Callable[[str, str], float]

#: What a good reply is, in plain words: the parts of ``world.gold_reward``, shown above the items.
RUBRIC = (
    "It answers what was asked: a time for \u201chow much time\u201d, a verdict with a reason for "
    "\u201cis this a good plan\u201d, a first step for \u201chow do I\u201d.",
    "It stays on the prompt's topic; wandering to another topic is worse.",
    "Useful advice helps; hedging (\u201cIt depends.\u201d, \u201cMaybe.\u201d) does not.",
    "It is polite (please, thanks, good luck) and never rude.",
    "Every sentence is whole and clean: nothing garbled, cut off or said twice; a greeting comes "
    "first, a sign-off last.",
    "About 8 to 30 words: not a one-liner, not a ramble.",
)

_BOX = "border:1px solid #bbb; border-radius:4px; padding:6px 10px; white-space:pre-wrap; margin:0"


def _widget_bundle(widget: w.Widget, text: str, **kwargs) -> dict:
    """``widget``'s display bundle with ``text`` as its text/plain, under ipywidgets 7 and 8.

    ipywidgets 8 widgets have ``_repr_mimebundle_``; ipywidgets 7 ones display through
    ``_ipython_display_`` instead, so the same bundle (the widget-view reference) is built here.
    """
    own = getattr(widget, "_repr_mimebundle_", None)
    if callable(own):
        bundle = dict(own(**kwargs) or {})
    else:
        bundle = {"application/vnd.jupyter.widget-view+json":
                  {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}}
        widget._handle_displayed()   # not **kwargs: IPython's include / exclude would reach Box's children
    bundle["text/plain"] = text
    return bundle


def _rubric_html(extra: str = "") -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in RUBRIC)
    return (f"<details open><summary><b>What makes a good reply</b></summary>"
            f"<ul style='margin:2px 0'>{items}</ul>{extra}</details>")


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
        if isinstance(choice, bool):
            raise TypeError(f"give an option's text or its 0-based index, not {choice!r}")
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

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The widget where one can render; the question and options as text everywhere else."""
        return _widget_bundle(self.widget, repr(self), **kwargs)


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


def _swapped(n_pairs: int, blind: bool, seed: int) -> list[bool]:
    """Per pair: is its second response shown as A? A fair coin of ``random.Random(seed)`` per pair when
    ``blind``, else never."""
    rng = random.Random(seed)
    return [bool(blind) and rng.random() < 0.5 for _ in range(n_pairs)]


def _gold_as_score(gold: float) -> int:
    """The 1-5 score a noiseless rater gives a reply of this gold reward (``world.SCORE_CUTS``)."""
    return 1 + sum(gold >= cut for cut in world.SCORE_CUTS)


class _Rater:
    """What both raters share: the items, the store, where we are, what was written, undo, the buttons
    (rebuilt for every item shown), the keys box, the rubric, the reveal.

    Subclasses set ``BUTTONS`` and ``KEYS`` and fill ``_key_of`` (which item a stored record rates, for
    resume), ``_show_item`` (draw an item) and ``click``. ``_history`` holds one entry per step forward:
    ``(item index, record written, or None for a skip)``; ``_done`` the indices rated (now or, with
    resume, before).
    """

    noun = "item"
    store_type: type[PreferenceStore] = PreferenceStore
    #: the buttons, in order: (key for ``click``, label, tooltip, ipywidgets button_style)
    BUTTONS: tuple[tuple[str, str, str, str], ...] = ()
    #: keys of the keys box -> key for ``click``
    KEYS: dict[str, str] = {}
    #: a second press of the same button within this many seconds is ignored, and so is a key pressed
    #: within this many seconds of the previous action
    debounce_s: float = 0.3

    def __init__(self, n_items: int, keys: list[tuple], store: StoreLike, rater_name: str,
                 source: str | None, resume: bool, rubric: bool, reveal: bool, score_fn: ScoreFn | None) -> None:
        if n_items == 0:
            raise ValueError(f"nothing to rate: the list of {self.noun}s is empty")
        if score_fn is not None and not callable(score_fn):
            raise TypeError(f"score_fn must be a function (prompt, response) -> float, got {score_fn!r}")
        if score_fn is not None and not reveal:
            raise ValueError("score_fn is only used to reveal the reward model's score after each click: "
                             "pass reveal=True with it")
        self.store = _open_store(store, self.store_type)
        self.rater_name = _check_rater_name(rater_name)
        self.source = source
        self.reveal, self.score_fn = bool(reveal), score_fn
        self.n = n_items
        self._done: set[int] = set()
        if resume:  # keys: one identity per item, compared with _key_of(record) of the stored records
            seen = {self._key_of(r) for r in self.store.records() if getattr(r, "rater", None) == self.rater_name}
            self._done = {i for i, k in enumerate(keys) if k in seen}
        self.resumed = len(self._done)  # items found already rated in the store when the widget opened
        self._history: list[tuple[int, object | None]] = []
        self._pos = self._next_open(0)
        self.n_ignored = 0                 # presses ignored as phantom (double-clicks, keys typed too fast)
        self._generation = 0               # items shown so far; each set of buttons acts for its own only
        self._shown_at = time.monotonic()  # when the item on screen was shown (for ``seconds``)
        self._last_press: tuple[str | None, float] = (None, float("-inf"))  # (key, time) of the last press
        self._last_action = float("-inf")  # time of the last press acted on
        self._status = w.HTML()
        self._status.add_class("rlhf-status")  # CSS classes: hooks for the browser test
        self._status_html = ""
        self._progress_label = w.HTML()
        self._progress_label.add_class("rlhf-progress")
        self._bar = w.IntProgress(min=0, max=self.n, layout=w.Layout(width="160px"))
        self._rubric = w.HTML(self._rubric_html() if rubric else "")
        self._reveal = w.HTML()
        self._reveal.add_class("rlhf-reveal")
        self._buttons: dict[str, w.Button] = {}
        self._retired: list[w.Button] = []  # the previous item's buttons: a late click on them is ignored
        self._button_box = w.HBox()
        self._keys = w.Text(value="", placeholder=f"click here, then press {' / '.join(self.KEYS)}",
                            continuous_update=True, layout=w.Layout(width="260px"))
        self._keys.add_class("rlhf-keys")
        self._keys.observe(self._on_key, names="value")

    # -- to fill in subclasses
    def _key_of(self, record) -> tuple | None:
        raise NotImplementedError

    def _show_item(self, i: int) -> None:
        raise NotImplementedError

    def _rubric_html(self) -> str:
        return _rubric_html()

    def click(self, choice) -> object | None:
        """Press a button from code. Returns the record written (or removed, for undo), None for skip."""
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

    def _seconds(self) -> float:
        """Seconds the item on screen has been shown."""
        return round(time.monotonic() - self._shown_at, 3)

    def _write(self, record) -> None:
        self.store.append(record)
        self._history.append((self._pos, record))
        self._done.add(self._pos)
        self._pos = self._next_open(self._pos + 1)

    def _skip(self) -> None:
        self._history.append((self._pos, None))
        self._pos = self._next_open(self._pos + 1)

    def _undo(self):
        """Remove the last record this widget wrote and go back to its item; skips after it are forgotten.

        Only that record's line goes (``PreferenceStore.undo``): lines others appended since are kept.
        RuntimeError (nothing changed) if the line is no longer in the file.
        """
        writes = [k for k, (_, rec) in enumerate(self._history) if rec is not None]
        if not writes:
            self._say("Nothing to undo: this widget has not written a rating yet.")
            return None
        k = writes[-1]
        i, rec = self._history[k]
        removed = self.store.undo(rec)
        del self._history[k:]
        self._done.discard(i)
        self._pos = i
        self._reveal.value = ""
        return removed

    # -- presses: buttons and keys
    def _on_click(self, key: str, generation: int | None = None) -> object | None:
        """A press of button ``key`` (or its key in the keys box): ``click(key)``, unless it is a phantom.

        Ignored: a press on buttons shown with another item (``generation`` is not the current one: the
        second click of a double-click reaches the kernel after the first one moved on), and a second
        press of the same key within ``debounce_s``. Errors show on the status line, then propagate.
        """
        now = time.monotonic()
        if generation is not None and generation != self._generation:
            return self._ignore("a click meant for the previous item")
        last_key, last_time = self._last_press
        if key == last_key and now - last_time < self.debounce_s:
            return self._ignore("a second press within a moment")
        self._last_press, self._last_action = (key, now), now
        try:
            return self.click(key)
        except Exception as err:  # noqa: BLE001 - shown to the person clicking, then re-raised to the log
            self._say(f"Error: {err}", "#b00")
            raise

    def _on_key(self, change: dict) -> None:
        """The keys box changed: act on the key just typed (its last character), then clear the box."""
        typed = change["new"]
        if not typed:
            return
        self._keys.value = ""
        key = typed[-1].lower()
        choice = self.KEYS.get(key)
        if choice is None:
            self._say(f"The key {key!r} does nothing here: press {', '.join(self.KEYS)}.", "#b00")
            return
        if time.monotonic() - self._last_action < self.debounce_s:  # typed before the next item showed
            self._ignore("a key pressed within a moment of the last one")
            return
        self._on_click(choice, self._generation)

    def _ignore(self, what: str) -> None:
        self.n_ignored += 1
        self._status.value = self._status_html + f" <span style='color:#888'>(ignored {html.escape(what)})</span>"
        return None

    # -- drawing
    def _say(self, text: str, color: str = "#333") -> None:
        self._status_html = f"<span style='color:{color}'>{html.escape(text)}</span>"
        self._status.value = self._status_html

    def _new_buttons(self) -> None:
        """A fresh set of buttons for what is on screen now; the previous set stops acting."""
        self._generation += 1
        generation = self._generation
        for button in self._retired:
            button.close()
        self._retired = list(self._buttons.values())
        self._buttons = {}
        for key, label, tooltip, style in self.BUTTONS:
            disabled = (key == "undo" and self.n_written == 0) or (key != "undo" and self.finished)
            button = w.Button(description=label, tooltip=tooltip, button_style=style, disabled=disabled,
                              layout=w.Layout(width="auto"))
            button.on_click(lambda _button, key=key: self._on_click(key, generation))
            self._buttons[key] = button
        self._button_box.children = tuple(self._buttons.values())

    def _refresh(self, message: str | None = None) -> None:
        self._new_buttons()  # first, so that the page drops the old buttons before it shows the new item
        self._bar.value = len(self._done)
        if self.finished:
            self._show_item(-1)
            self._progress_label.value = f"<b>{self.progress_text}</b> · done"
            self._say(f"Done, thank you! {self.n_written} rated, {self.n_skipped} skipped"
                      + (f", {self.resumed} rated earlier" if self.resumed else "")
                      + f". Every rating is saved in {self.store.path}.", "green")
        else:
            self._show_item(self._pos)
            self._progress_label.value = f"<b>{self.progress_text}</b>"
            if message is not None:
                self._say(message)
        self._shown_at = time.monotonic()

    def _layout(self, *item_rows: w.Widget) -> w.VBox:
        return w.VBox([w.HBox([self._progress_label, self._bar]), self._rubric, *item_rows,
                       w.HBox([self._button_box, self._keys]), self._reveal, self._status])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.progress_text}, saving to {self.store.path})"

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The widget where one can render, a line of text everywhere else; the clock of the item on
        screen starts now."""
        self._shown_at = time.monotonic()
        return _widget_bundle(self.widget, repr(self), **kwargs)


class PairwiseRater(_Rater):
    """Rate pairs of responses by hand: which of A and B answers the prompt better?

    Shows the rubric (``RUBRIC``), the prompt, A | B side by side, the buttons "A is better", "B is
    better", "Tie", "Skip", "Undo", a keys box (``a`` / ``b`` / ``t`` / ``s`` / ``u`` while it has focus), a
    progress counter "k of n" and a status line. Each rating is appended to the store at once as a
    ``PreferenceRecord`` with ``rater=rater_name``, ``source=source``, ``shown_first`` ("chosen" if the
    chosen reply was shown as A, else "rejected") and ``seconds`` (time on screen before the click).
    "Tie" writes ``tie=True`` with chosen = A and rejected = B as shown (the file format's rule for
    ties, so its ``shown_first`` is "chosen"); "Skip" writes nothing; "Undo" removes the last record this
    widget wrote and shows that pair again. A double-click counts once (see the module docstring).

    Args:
        pairs: ``(prompt, response_1, response_2)`` triples, as ``world.make_pairs`` returns.
        store: a ``PreferenceStore`` or the path of its JSONL file.
        rater_name: your name; goes into every record's ``rater`` field.
        source: a label stored with every record (which data set or comparison these pairs are).
        blind: show each pair's responses in a random order (seeded), so that neither position nor
            origin can be guessed; used to compare two policies blind. Records name the chosen text
            itself, so they are right whatever the order on screen; ``shown_first`` keeps the order.
        seed: seed of that random order.
        resume: pairs this rater already rated in the store are not shown again (reopening the
            notebook continues where you stopped). ``False`` shows every pair.
        rubric: show the rubric above the pairs.
        reveal: after each rating, show the gold reward of both replies (and ``score_fn``'s score).
            Off by default: knowing the answer changes how people rate, so keep it off for data.
        score_fn: ``score_fn(prompt_text, response) -> float``, e.g. the reward model's score, revealed
            beside the gold reward; needs ``reveal=True``.
    """

    noun = "pair"
    BUTTONS = (("A", "A is better", "The left response (A) answers better", "info"),
               ("B", "B is better", "The right response (B) answers better", "info"),
               ("tie", "Tie", "Both are equally good (or equally bad)", ""),
               ("skip", "Skip", "Do not rate this pair; nothing is saved", ""),
               ("undo", "Undo", "Delete your last rating and show that pair again", "warning"))
    KEYS = {"a": "A", "b": "B", "t": "tie", "s": "skip", "u": "undo"}

    def __init__(self, pairs: Sequence[Pair], store: StoreLike, *, rater_name: str, source: str | None = None,
                 blind: bool = False, seed: int = 0, resume: bool = True, rubric: bool = True,
                 reveal: bool = False, score_fn: ScoreFn | None = None) -> None:
        self.pairs: list[tuple[str, str, str]] = []
        self._prompts: list[PromptLike] = []  # as given: a world.Prompt knows its topic (for the gold reveal)
        for i, pair in enumerate(pairs):
            if len(pair) != 3 or not all(isinstance(r, str) for r in pair[1:]):
                raise ValueError(f"pair {i} must be (prompt, response, response) with str responses, got {pair!r}")
            self.pairs.append((prompt_text(pair[0]), pair[1], pair[2]))
            self._prompts.append(pair[0])
        #: swapped[i]: pair i shows its second response as A (only ever True when blind)
        self.swapped = _swapped(len(self.pairs), blind, seed)
        keys = [(p, frozenset((a, b))) for p, a, b in self.pairs]
        super().__init__(len(self.pairs), keys, store, rater_name, source, resume, rubric, reveal, score_fn)
        self._prompt = w.HTML()
        self._side = {s: w.HTML(layout=w.Layout(width="50%")) for s in "AB"}
        self.widget = self._layout(self._prompt, w.HBox([self._side["A"], self._side["B"]]))
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
        self._reveal.value = ""
        if key == "skip":
            self._skip()
            self._refresh(f"Skipped pair {n_pair}.")
            return None
        prompt, a_text, b_text = self.current
        chosen, rejected = (b_text, a_text) if key == "B" else (a_text, b_text)  # a tie keeps A, B
        record = PreferenceRecord(prompt=prompt, chosen=chosen, rejected=rejected, rater=self.rater_name,
                                  tie=key == "tie", source=self.source,
                                  shown_first="rejected" if key == "B" else "chosen", seconds=self._seconds())
        if self.reveal:
            self._reveal.value = self._reveal_html(n_pair, self._prompts[self._pos], a_text, b_text, key)
        self._write(record)
        self._refresh(f"Saved pair {n_pair}: " + ("tie." if key == "tie" else f"{key} is better."))
        return record

    def _reveal_html(self, n_pair: int, prompt: PromptLike, a_text: str, b_text: str, key: str) -> str:
        gold = {"A": gold_reward(prompt, a_text), "B": gold_reward(prompt, b_text)}
        prefers = "A" if gold["A"] > gold["B"] else "B" if gold["B"] > gold["A"] else "neither (equal)"
        text = (f"Pair {n_pair}: gold reward A {gold['A']:+.2f}, B {gold['B']:+.2f}, so gold prefers {prefers}; "
                f"you chose {'a tie' if key == 'tie' else key}.")
        if self.score_fn is not None:
            text_of = prompt_text(prompt)
            a, b = float(self.score_fn(text_of, a_text)), float(self.score_fn(text_of, b_text))
            text += f" Reward model: A {a:+.2f}, B {b:+.2f}."
        return f"<span style='color:#555'>{html.escape(text)}</span>"


class ScoreRater(_Rater):
    """Score responses one at a time from 1 (poor) to 5 (excellent).

    The rubric, buttons "1" to "5", "Skip", "Undo", a keys box (``1``-``5`` / ``s`` / ``u`` while it has
    focus), a progress counter "k of n" and a status line. Each score is appended to the store at once
    as a ``ScoreRecord`` with ``seconds`` (time on screen before the click); Skip, Undo, double-clicks
    and ``reveal`` work as in ``PairwiseRater`` (the reveal shows the gold reward and the score a
    noiseless rater would give).

    Args:
        items: ``(prompt, response)`` pairs.
        store: a ``ScoreStore`` or the path of its JSONL file.
        rater_name: your name; goes into every record's ``rater`` field.
        source: a label stored with every record.
        resume: responses this rater already scored in the store are not shown again.
        rubric, reveal, score_fn: as in ``PairwiseRater``.
    """

    noun = "response"
    store_type = ScoreStore
    LABELS = {1: "poor", 2: "weak", 3: "acceptable", 4: "good", 5: "excellent"}
    BUTTONS = tuple((str(s), str(s), f"{s} = {label}", "info") for s, label in LABELS.items()) + (
        ("skip", "Skip", "Do not score this response; nothing is saved", ""),
        ("undo", "Undo", "Delete your last score and show that response again", "warning"))
    KEYS = {**{str(s): str(s) for s in LABELS}, "s": "skip", "u": "undo"}

    def __init__(self, items: Sequence[Item], store: StoreLike, *, rater_name: str, source: str | None = None,
                 resume: bool = True, rubric: bool = True, reveal: bool = False,
                 score_fn: ScoreFn | None = None) -> None:
        self.items: list[tuple[str, str]] = []
        self._prompts: list[PromptLike] = []
        for i, item in enumerate(items):
            if len(item) != 2 or not isinstance(item[1], str):
                raise ValueError(f"item {i} must be (prompt, response) with a str response, got {item!r}")
            self.items.append((prompt_text(item[0]), item[1]))
            self._prompts.append(item[0])
        super().__init__(len(self.items), list(self.items), store, rater_name, source, resume, rubric, reveal,
                         score_fn)
        self._prompt = w.HTML()
        self._response = w.HTML()
        self.widget = self._layout(self._prompt, self._response)
        self._refresh("How good is this response? 1 = poor, 5 = excellent.")

    def _rubric_html(self) -> str:
        scale = ", ".join(f"{s} = {label}" for s, label in self.LABELS.items())
        return _rubric_html(f"<p style='margin:2px 0'>Scores: {html.escape(scale)}.</p>")

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
        self._reveal.value = ""
        if key == "skip":
            self._skip()
            self._refresh(f"Skipped response {n_item}.")
            return None
        prompt, response = self.items[self._pos]
        record = ScoreRecord(prompt=prompt, response=response, score=int(key), rater=self.rater_name,
                             source=self.source, seconds=self._seconds())
        if self.reveal:
            self._reveal.value = self._reveal_html(n_item, self._prompts[self._pos], response, int(key))
        self._write(record)
        self._refresh(f"Saved response {n_item}: score {key}.")
        return record

    def _reveal_html(self, n_item: int, prompt: PromptLike, response: str, score: int) -> str:
        gold = gold_reward(prompt, response)
        text = (f"Response {n_item}: gold reward {gold:+.2f}, which a noiseless rater scores "
                f"{_gold_as_score(gold)}; you gave {score}.")
        if self.score_fn is not None:
            text += f" Reward model: {float(self.score_fn(prompt_text(prompt), response)):+.2f}."
        return f"<span style='color:#555'>{html.escape(text)}</span>"


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
               seed: int = 0, resume: bool = True, rubric: bool = True, reveal: bool = False,
               score_fn: ScoreFn | None = None, display: Callable[[object], None] | None = _show
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
        blind, seed: show each pair's sides in a seeded random order (see ``PairwiseRater``); in simulated
            mode the simulated rater reads them in that order. Both modes record ``shown_first``.
        resume: pairs this rater already rated in the store are not rated again (both modes; in simulated
            mode "this rater" is ``simulated_rater.name``). A pair is known by its prompt and its set of
            two responses, so the order they were shown in does not matter.
        rubric, reveal, score_fn: human mode only: see ``PairwiseRater``.
        display: how human mode shows the widget (default ``IPython.display.display``; None: don't).

    Simulated records have ``seconds=None`` (no one was timed).
    """
    _check_mode(mode)
    if mode == "human":
        if rater_name is None:
            raise ValueError("mode='human' needs rater_name=<your name>")
        rater = PairwiseRater(pairs, store, rater_name=rater_name, source=source, blind=blind, seed=seed,
                              resume=resume, rubric=rubric, reveal=reveal, score_fn=score_fn)
        if display is not None:
            display(rater)
        return rater
    store = _open_store(store, PreferenceStore)
    simulated_rater = simulated_rater or SimulatedRater()
    done = _rated(store, simulated_rater.name, PreferenceRecord) if resume else set()
    records = []
    for (prompt, a, b), swapped in zip(pairs, _swapped(len(pairs), blind, seed)):
        if (prompt_text(prompt), frozenset((a, b))) in done:
            continue
        shown_a, shown_b = (b, a) if swapped else (a, b)
        record = simulated_rater.rate(prompt, shown_a, shown_b, source=source)
        record = replace(record, shown_first="chosen" if record.chosen == shown_a else "rejected")
        store.append(record)
        records.append(record)
    return records


def rate_scores(items: Sequence[Item], store: StoreLike, *, mode: Mode, rater_name: str | None = None,
                simulated_rater: SimulatedRater | None = None, source: str | None = None, resume: bool = True,
                rubric: bool = True, reveal: bool = False, score_fn: ScoreFn | None = None,
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
        rater = ScoreRater(items, store, rater_name=rater_name, source=source, resume=resume, rubric=rubric,
                           reveal=reveal, score_fn=score_fn)
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
               simulated_rater: SimulatedRater | None = None, source: str | None = None, rubric: bool = True,
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
                      source=source, blind=False, resume=True, rubric=rubric, display=display)
