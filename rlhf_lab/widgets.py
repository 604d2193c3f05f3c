"""Widgets of the course: quizzes now; the rating widgets of notebook 02 join them."""
from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as w


class Quiz:
    """A multiple-choice question with immediate feedback.

    Shown with ``display(quiz.widget)`` (or by leaving it as the last expression of a cell).
    ``quiz.check(choice)`` gives the same feedback from code, so the quiz works headless.
    """

    def __init__(self, question: str, options: Sequence[str], answer: str, explanation: str = "") -> None:
        if answer not in options:
            raise ValueError(f"the answer {answer!r} is not one of the options {list(options)}")
        self.question, self.options, self.answer, self.explanation = question, list(options), answer, explanation
        self._choice = w.RadioButtons(options=self.options, value=None, layout=w.Layout(width="auto"))
        self._button = w.Button(description="Check", tooltip="Check your answer")
        self._feedback = w.HTML()
        self._button.on_click(lambda _: self._show(self._choice.value))
        self.widget = w.VBox([w.HTML(f"<b>{question}</b>"), self._choice, self._button, self._feedback])

    def check(self, choice: str | None) -> str:
        """Feedback for ``choice``: whether it is right, and why."""
        if choice is None:
            return "Pick an answer first."
        if choice not in self.options:
            raise ValueError(f"{choice!r} is not one of the options {self.options}")
        if choice == self.answer:
            return f"Correct. {self.explanation}".strip()
        return f"Not quite: {choice!r} is not it. Think again about what the feedback is used for."

    def _show(self, choice: str | None) -> None:
        text = self.check(choice)
        color = "green" if choice == self.answer else "#b00"
        self._feedback.value = f"<span style='color:{color}'>{text}</span>"

    def _repr_mimebundle_(self, **kwargs):  # display(quiz) shows the widget
        return self.widget._repr_mimebundle_(**kwargs)
