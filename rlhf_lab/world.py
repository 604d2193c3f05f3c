"""The simulated-human world: prompts, a gold reward that reads like a careful person, a simulated rater.

Real RLHF needs people to read pairs of replies and click the better one. A class cannot click
thousands of pairs, so the course ships a small world where "what people prefer" is written down
as a readable Python function, the **gold reward**. It reads a reply sentence by sentence, as a
careful reader does, and adds up named parts (``gold_reward_parts``):

* **answers**: the reply contains a sentence that answers what was asked (a time for "how much
  time", a verdict with a reason for "is this a good plan", a first step for "how do I", ...),
* **helpful**: general advice helps a little; hedging ("It depends.") does not,
* **on_topic** / **off_topic**: naming the prompt's topic earns; naming another topic costs,
* **polite**: "please", "thanks", "good luck" help; "whatever", "stupid" hurt,
* **well_formed**: every sentence must be a sentence of the world (``phrasebook.py``); a garbled
  or merged sentence costs,
* **finished**: a reply whose last sentence is cut off (or that never ended) costs,
* **order**: a greeting comes first and a sign-off last; anywhere else they cost,
* **repetitive**: saying the same sentence twice costs,
* **length**: about 8 to 30 words is fine; shorter or longer costs.

A **simulated rater** reads two responses and prefers A with probability
``sigmoid((gold(A) - gold(B)) / temperature)`` (the Bradley-Terry model). The temperature is
rater noise: 0 always picks the better one, 1 is a moderate amount of disagreement, large
values are coin flips. Because the gold reward is known, we can compute things real RLHF can
only guess: the best accuracy any reward model could reach on these noisy clicks
(``bayes_ceiling``), and whether a policy's reward is real or a loophole (over-optimisation).

Replies here come from ``candidate_responses``: sentences of the phrasebook in a row, of mixed
quality (with the mistakes above), so the world needs no model at all. The tiny language model
of notebook 04 is pretrained on fluent replies of the same world (``response_corpus``): their
grammar is right, their content is mixed.

Run ``python -m rlhf_lab.world`` to see a few prompts, candidates and their gold parts, and
``python -m rlhf_lab.world --write-prompts`` to rebuild ``data/prompts.jsonl``.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from rlhf_lab.paths import DATA
from rlhf_lab.phrasebook import (ADVICE, ANSWER_KINDS, ANSWERS, CLOSINGS, EITHER_END, GREETINGS, INSTRUCTIONS, OPINIONS,
                                 POLITE, RUDE, RUDE_LINES, SHORT, SUGGESTIONS, TEMPLATES, TOPIC_LINES, TOPICS, VAGUE)
from rlhf_lab.preferences import DataFileError, PreferenceRecord

PROMPTS_PATH = DATA / "prompts.jsonl"
KINDS = ("plan", "question", "request")
TOPIC_REF = {t: ref for t, _, _, ref in TOPICS}


# ----------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Prompt:
    """One user message. ``topic`` is a word or phrase that appears in ``text``."""
    text: str    # what the user wrote
    topic: str   # lowercase topic word/phrase, e.g. "garden" or "job interview"
    kind: str    # "plan", "question" or "request"

    @property
    def asks(self) -> tuple[str, ...]:
        """The answer kinds that answer this prompt (``phrasebook.ANSWER_KINDS``); () if unknown."""
        return asks_of(self.text)

    @property
    def instruction(self) -> str | None:
        """The name of the verifiable instruction the prompt ends with (``phrasebook.INSTRUCTIONS``), or None."""
        return strip_instruction(self.text)[1]


def strip_instruction(text: str) -> tuple[str, str | None]:
    """``(the prompt without its instruction, the instruction's name)``; ``(text, None)`` if it carries none.

    ``"How do I start a garden? Answer in one sentence."`` -> ``("How do I start a garden?", "one_sentence")``.
    """
    text = " ".join(text.split())
    for name, sentence in INSTRUCTIONS.items():
        if text.endswith(" " + sentence):
            return text[: -len(sentence) - 1], name
    return text, None


def with_instruction(prompt: Prompt, name: str) -> Prompt:
    """``prompt`` with the verifiable instruction ``name`` appended (notebook 11). Same topic, kind and asks."""
    if name not in INSTRUCTIONS:
        raise ValueError(f"unknown instruction {name!r}; one of {tuple(INSTRUCTIONS)}")
    base, old = strip_instruction(prompt.text)
    if old is not None:
        raise ValueError(f"prompt {prompt.text!r} already carries the instruction {old!r}")
    return Prompt(f"{base} {INSTRUCTIONS[name]}", prompt.topic, prompt.kind)


def prompt_text(prompt: Prompt | str) -> str:
    """The text of a :class:`Prompt`, or the string itself (every function that takes either calls this)."""
    text = getattr(prompt, "text", prompt)
    if not isinstance(text, str):
        raise TypeError(f"a prompt must be a str or a world.Prompt, got {type(prompt).__name__}")
    return text


@functools.lru_cache(maxsize=1)
def _template_patterns() -> list[tuple[re.Pattern, tuple[str, ...]]]:
    out = []
    for templates in TEMPLATES.values():
        for template, asks in templates:
            pattern = re.escape(template).replace(re.escape("{plan}"), ".+").replace(re.escape("{about}"), ".+")
            out.append((re.compile(f"^{pattern}$"), asks))
    return out


@functools.lru_cache(maxsize=4096)
def asks_of(text: str) -> tuple[str, ...]:
    """What a prompt text asks for, from its template: e.g. ``("time",)`` for "How much time does it take to ...?".

    A free-text prompt that matches no template asks for nothing the gold reward can check: ``()``.
    A verifiable instruction at the end (notebook 11) does not change what is asked.
    """
    text = strip_instruction(text)[0]
    for pattern, asks in _template_patterns():
        if pattern.match(text.strip()):
            return asks
    return ()


def build_prompts(seed: int = 0) -> list[Prompt]:
    """All course prompts: per topic the seed-style plan question plus 2 more plan, 2 question
    and 2 request templates (picked with ``random.Random(seed)``): 7 x 45 topics = 315 prompts."""
    rng = random.Random(seed)
    prompts = []
    for topic, plan, about, _ in TOPICS:
        picks = [("plan", TEMPLATES["plan"][0])]
        picks += [("plan", t) for t in rng.sample(TEMPLATES["plan"][1:], 2)]
        picks += [("question", t) for t in rng.sample(TEMPLATES["question"], 2)]
        picks += [("request", t) for t in rng.sample(TEMPLATES["request"], 2)]
        for kind, (template, _) in picks:
            text = template.format(plan=plan, about=about)
            if topic_of(text) != topic:
                raise AssertionError(f"prompt {text!r} should have the single topic {topic!r}")
            prompts.append(Prompt(text, topic, kind))
    return prompts


def write_prompts(path: Path = PROMPTS_PATH, seed: int = 0) -> Path:
    """Write ``build_prompts(seed)`` to ``path`` as JSONL (one prompt a line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for p in build_prompts(seed):
            f.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")
    return path


def load_prompts(path: Path = PROMPTS_PATH) -> list[Prompt]:
    """Read a prompts JSONL file ({"text", "topic", "kind"} a line); ``DataFileError`` names path:line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no prompts file; rebuild it with `python -m rlhf_lab.world --write-prompts`")
    prompts = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFileError(path, line_no, f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(d, dict):
            raise DataFileError(path, line_no, f"expected a JSON object, got {type(d).__name__}")
        for key in ("text", "topic", "kind"):
            if not isinstance(d.get(key), str) or not d[key].strip():
                raise DataFileError(path, line_no, f"field {key!r} must be a non-empty string, got {d.get(key)!r}")
        if d["kind"] not in KINDS:
            raise DataFileError(path, line_no, f"kind must be one of {KINDS}, got {d['kind']!r}")
        if not mentions(words(d["text"]), d["topic"]):
            raise DataFileError(path, line_no, f"topic {d['topic']!r} does not appear in the text {d['text']!r}")
        prompts.append(Prompt(d["text"], d["topic"].lower(), d["kind"]))
    return prompts


def split_prompts(prompts: Sequence[Prompt], seed: int = 0,
                  test_fraction: float = 0.2) -> tuple[list[Prompt], list[Prompt]]:
    """A fixed train/test split by prompt: (train, test), each in the original order."""
    if not 0 <= test_fraction <= 1:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    test_idx = set(order[: round(len(prompts) * test_fraction)])
    train = [p for i, p in enumerate(prompts) if i not in test_idx]
    test = [p for i, p in enumerate(prompts) if i in test_idx]
    return train, test


# ----------------------------------------------------------------------------- text helpers
def words(text: str) -> list[str]:
    """Lowercase words without punctuation: ``"Good luck!"`` -> ``["good", "luck"]``."""
    return re.findall(r"[a-z0-9]+", text.lower())


def count_phrases(ws: Sequence[str], phrases: Sequence[str]) -> int:
    """How many times any of ``phrases`` (each one or more words) occurs in the word list ``ws``.

    At most one phrase is counted per starting word (the phrases here never share a start).
    """
    text = " " + " ".join(ws) + " "
    return len(_phrase_pattern(tuple(phrases)).findall(text))


@functools.lru_cache(maxsize=1024)
def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern:
    # a zero-width look-ahead counts every occurrence, overlapping ones too ("try try try": 3)
    return re.compile(f"(?= (?:{'|'.join(map(re.escape, phrases))}) )")


def mentions(ws: Sequence[str], phrase: str) -> bool:
    """True if ``phrase`` (a word or words) occurs in the word list ``ws``."""
    return count_phrases(ws, [phrase.lower()]) > 0


# a look-ahead, so that neighbouring topics are both found ("garden bike")
_TOPIC_PATTERN = re.compile("(?= (" + "|".join(re.escape(t) for t, *_ in sorted(TOPICS, key=lambda t: -len(t[0]))) + ") )")


@functools.lru_cache(maxsize=65536)
def topics_in(text: str) -> frozenset[str]:
    """Every known topic that ``text`` names (as whole words): ``"Good luck with your diet!"`` -> {"diet"}."""
    return frozenset(_TOPIC_PATTERN.findall(" " + " ".join(words(text)) + " "))


@functools.lru_cache(maxsize=4096)
def topic_of(text: str) -> str | None:
    """The known topic mentioned in ``text`` (the longest if several), or None."""
    found = topics_in(text)
    return max(found, key=len) if found else None


STOPWORDS = frozenset("a an the and or but to of in on for at by with my your i you me is it this that "
                      "what how do does should can about any some think would could".split())


def split_sentences(text: str) -> tuple[list[str], str]:
    """A reply's complete sentences (each ending in . ! or ?) and what is left after the last one.

    ``"Hi! Try a small test run before you"`` -> ``(["Hi!"], "Try a small test run before you")``.
    Spaces are normalised to one between words.
    """
    text = " ".join(text.split())
    found = re.findall(r"[^.!?]*[.!?]+", text)
    rest = text[sum(len(s) for s in found):].strip()
    return [s.strip() for s in found if s.strip()], rest


# ----------------------------------------------------------------------------- reading a reply
@dataclass(frozen=True)
class Role:
    """What a phrasebook sentence does in a reply."""
    role: str                # greeting, opinion, topic, answer, advice, vague, rude, closing, suggestion, short
    topic: str | None = None  # the topic it names, if any
    kind: str | None = None   # for an answer: which ANSWER_KINDS it is


def _capitalised(s: str) -> str:
    return s[:1].upper() + s[1:]


@functools.lru_cache(maxsize=1)
def grammar() -> dict[str, Role]:
    """Every well-formed sentence of the world, with its :class:`Role` (built once from ``phrasebook``)."""
    g: dict[str, Role] = {}
    for role, lines in (("short", SHORT), ("vague", VAGUE), ("rude", RUDE_LINES), ("opinion", OPINIONS),
                        ("greeting", GREETINGS), ("advice", ADVICE)):
        g.update({s: Role(role) for s in lines if s})
    for topic, ref in TOPIC_REF.items():
        for s in TOPIC_LINES:
            g[_capitalised(s.format(ref=ref))] = Role("topic", topic)
        for s in ADVICE:                                # "For your garden, start small and build up slowly."
            g[f"For {ref}, {s[0].lower()}{s[1:]}"] = Role("advice", topic)
        for s in CLOSINGS:
            g[s.format(ref=ref)] = Role("closing", topic if "{ref}" in s else None)
        for s in SUGGESTIONS:
            g[s.format(ref=ref)] = Role("suggestion", topic)
        for kind, s in zip(ANSWER_KINDS, ANSWERS[topic]):
            g[s] = Role("answer", topic, kind)
    return g


def _core(sentence: str) -> str:
    """A sentence without its "For <topic>," lead-in, lowercased: what counts as "the same sentence"."""
    return " ".join(words(re.sub(r"^For [^,]+, ", "", sentence)))


@dataclass(frozen=True)
class Reading:
    """What a careful reader notices in one reply: the counts the gold reward is made of."""
    n_words: int              # words in the reply
    fitting_answers: int      # sentences that answer what the prompt asks
    other_answers: int        # answers about the prompt's topic, but to another question
    advice: int               # distinct general advice sentences
    vague: int                # hedges: "It depends.", "Maybe."
    names_topic: bool         # the prompt's topic is named somewhere
    off_topic: int            # sentences that name another topic
    polite: int               # polite phrases
    rude: int                 # rude phrases
    malformed: int            # complete sentences that are not in the phrasebook
    unfinished: bool          # the last sentence is cut off, or the reply never ended
    misplaced: int            # greetings after the start, sign-offs before the end
    repeated: int             # sentences said before in the same reply


def read_reply(prompt: Prompt | str, response: str, ended: bool = True) -> Reading:
    """Read ``response`` to ``prompt`` sentence by sentence (see :class:`Reading`).

    ``ended=False`` says the reply never ended (the policy hit its token limit without end-of-sequence).
    """
    topic = prompt.topic if isinstance(prompt, Prompt) else topic_of(prompt_text(prompt))
    asks = asks_of(prompt_text(prompt))
    sentences, rest = split_sentences(response)
    g = grammar()
    roles = [g.get(s) for s in sentences]
    ws = words(response)
    seen: set[str] = set()
    repeated = 0
    for s in sentences:
        core = _core(s)
        repeated += core in seen
        seen.add(core)
    named = [topics_in(s) for s in sentences + ([rest] if rest else [])]
    kinds = [None if s in EITHER_END else r.role if r else None for s, r in zip(sentences, roles)]
    last_other = max((i for i, k in enumerate(kinds) if k != "closing"), default=-1)
    first_other = next((i for i, k in enumerate(kinds) if k != "greeting"), len(kinds))
    return Reading(
        n_words=len(ws),
        fitting_answers=sum(r is not None and r.role == "answer" and r.topic == topic and r.kind in asks for r in roles),
        other_answers=sum(r is not None and r.role == "answer" and r.topic == topic and r.kind not in asks
                          for r in roles),
        advice=len({_core(s) for s, r in zip(sentences, roles) if r is not None and r.role == "advice"}),
        vague=sum(k == "vague" for k in kinds),
        names_topic=on_topic(prompt, ws),
        off_topic=sum(bool(t - {topic}) for t in named) if topic is not None else 0,
        polite=count_phrases(ws, POLITE),
        rude=count_phrases(ws, RUDE),
        malformed=sum(r is None for r in roles),
        unfinished=bool(rest) or not ended,
        misplaced=sum(k == "greeting" and i >= first_other for i, k in enumerate(kinds))
                  + sum(k == "closing" and i < last_other for i, k in enumerate(kinds)),
        repeated=repeated,
    )


def is_well_formed(sentence: str) -> bool:
    """Is ``sentence`` (one complete sentence) a sentence of the world's phrasebook?"""
    return " ".join(sentence.split()) in grammar()


def fluency(responses: Sequence[str], ended: Sequence[bool] | None = None) -> dict[str, float]:
    """How fluent a set of replies is: ``well_formed``, the share of complete sentences that are in the
    phrasebook, and ``ended``, the share of replies that ended (end-of-sequence written; all if not given)."""
    sentences = [s for r in responses for s in split_sentences(r)[0]]
    ended = [True] * len(responses) if ended is None else list(ended)
    return {"well_formed": sum(map(is_well_formed, sentences)) / max(1, len(sentences)),
            "ended": sum(map(bool, ended)) / max(1, len(ended))}


def on_topic(prompt: Prompt | str, ws: Sequence[str]) -> bool:
    """Does the response (as words ``ws``) mention the prompt's topic?

    For a free-text prompt with no known topic, any shared content word counts.
    """
    topic = prompt.topic if isinstance(prompt, Prompt) else topic_of(prompt)
    if topic is not None:
        return mentions(ws, topic)
    content = {w for w in words(prompt) if w not in STOPWORDS and len(w) > 2}
    return bool(content & set(ws))


# ----------------------------------------------------------------------------- gold reward
def length_score(n_words: int) -> float:
    """0 for 8-30 words; empty -4, 1-2 words -2.5, 3-7 words -0.25 per missing word, -0.1 per word over 30."""
    if n_words == 0:
        return -4.0
    if n_words <= 2:
        return -2.5
    if n_words < 8:
        return -0.25 * (8 - n_words)
    return -0.1 * max(0, n_words - 30)


def gold_reward_parts(prompt: Prompt | str, response: str, ended: bool = True) -> dict[str, float]:
    """The gold reward's named parts; they sum to ``gold_reward(prompt, response, ended)``."""
    r = read_reply(prompt, response, ended)
    return {
        "answers": 2.0 if r.fitting_answers else (0.5 if r.other_answers else 0.0),
        "helpful": 0.5 * min(r.advice, 2) - 0.5 * min(r.vague, 2),
        "on_topic": 1.0 if r.names_topic else 0.0,
        "off_topic": -1.5 * min(r.off_topic, 2),
        "polite": 0.5 * min(r.polite, 2) - 1.5 * min(r.rude, 2),
        "well_formed": -1.5 * min(r.malformed, 3),
        "finished": -2.0 if r.unfinished else 0.0,
        "order": -1.0 * min(r.misplaced, 2),
        "repetitive": -1.5 * min(r.repeated, 3),
        "length": length_score(r.n_words),
    }


#: The names of the gold reward's parts, in the order ``gold_reward_parts`` gives them.
GOLD_PARTS = ("answers", "helpful", "on_topic", "off_topic", "polite", "well_formed", "finished", "order",
              "repetitive", "length")


def gold_reward(prompt: Prompt | str, response: str, ended: bool = True) -> float:
    """What a careful reader prefers, as a number: about -10 (garbled, cut off, rude) to +5 (answers, polite)."""
    return sum(gold_reward_parts(prompt, response, ended).values())


# ----------------------------------------------------------------------------- candidates
def _answer(topic: str, kind: str) -> str:
    return ANSWERS[topic][ANSWER_KINDS.index(kind)]


def garble(sentence: str, rng: random.Random, others: Sequence[str] = ADVICE) -> str:
    """A broken copy of ``sentence``: a word dropped, two words swapped, a word doubled, the start
    of it merged with the end of another sentence, or a doubled comma. Never a phrasebook sentence."""
    for _ in range(20):
        ws = sentence.rstrip(".!?").split()
        end = sentence[len(sentence.rstrip(".!?")):] or "."
        how = rng.randrange(5)
        if how == 0 and len(ws) > 2:
            del ws[rng.randrange(1, len(ws))]
        elif how == 1 and len(ws) > 2:
            i = rng.randrange(len(ws) - 1)
            ws[i], ws[i + 1] = ws[i + 1], ws[i]
        elif how == 2:
            i = rng.randrange(len(ws))
            ws.insert(i, ws[i].lower().strip(","))
        elif how == 3:
            other = rng.choice(list(others)).rstrip(".!?").split()
            ws = ws[:max(1, len(ws) // 2)] + other[len(other) // 2:]
        else:
            i = rng.randrange(len(ws))
            ws[i] = ws[i].rstrip(",") + ",,"
        out = " ".join(ws) + end
        if not is_well_formed(out):
            return out
    return sentence.rstrip(".!?") + " and and."


#: How often each mistake appears: in the pretraining corpus (fluent: never garbled, cut off or empty) and in
#: the candidates that raters compare (every mistake often enough that a reward model learns what it costs).
MISTAKE_RATES = {
    "corpus":     {"short": 0.0, "off_topic": 0.10, "order": 0.06, "repeat": 0.05, "garbled": 0.0, "cut": 0.0},
    "candidates": {"short": 0.04, "off_topic": 0.20, "order": 0.15, "repeat": 0.15, "garbled": 0.20, "cut": 0.08},
}


def _one_candidate(prompt: Prompt, rng: random.Random, mistakes: bool = True) -> str:
    """One reply of random quality (see ``candidate_responses``); ``mistakes=False``: always well-formed and finished."""
    rate = MISTAKE_RATES["candidates" if mistakes else "corpus"]
    topic = prompt.topic
    ref = TOPIC_REF.get(topic, topic)
    asks = prompt.asks or ("start",)
    if mistakes and rng.random() < rate["short"]:                 # degenerate: empty or a word or two
        return rng.choice(SHORT)
    parts: list[str] = []
    if rng.random() < 0.3:
        parts.append(rng.choice(GREETINGS))
    if prompt.kind == "plan" and rng.random() < 0.4:
        parts.append(rng.choice(OPINIONS))
    if rng.random() < 0.08:
        parts.append(rng.choice(RUDE_LINES))
    content = rng.random()
    if topic in ANSWERS and content < 0.45:                       # answers what was asked
        parts.append(_answer(topic, rng.choice(asks)))
    elif topic in ANSWERS and content < 0.6:                      # on topic, but answers another question
        parts.append(_answer(topic, rng.choice([k for k in ANSWER_KINDS if k not in asks])))
    elif content < 0.72:
        parts.append(_capitalised(rng.choice(TOPIC_LINES).format(ref=ref)))
    advice = rng.sample(ADVICE, rng.choices((0, 1, 2), weights=(4, 5, 2))[0])
    if advice and content >= 0.6 and rng.random() < 0.4:         # "For your garden, start small ..."
        advice[0] = f"For {ref}, {advice[0][0].lower()}{advice[0][1:]}"
    parts += advice
    if not advice and content >= 0.45 and rng.random() < 0.5:
        parts.append(rng.choice(VAGUE))
    closing = rng.choice(CLOSINGS).format(ref=ref) if rng.random() < 0.4 else None
    if rng.random() < rate["off_topic"]:                          # drifts to another topic
        other = rng.choice([t for t in TOPIC_REF if t != topic])
        how = rng.randrange(3)
        if how == 0:
            parts.append(rng.choice(SUGGESTIONS).format(ref=TOPIC_REF[other]))
        elif how == 1:
            parts.append(_answer(other, rng.choice(asks)))
        else:
            closing = rng.choice([s for s in CLOSINGS if "{ref}" in s]).format(ref=TOPIC_REF[other])
    if closing:
        parts.append(closing)
    if not parts:
        parts.append(rng.choice(VAGUE))
    if len(parts) > 1 and rng.random() < rate["order"]:           # a greeting at the end, a sign-off in the middle
        if rng.random() < 0.5:
            parts.append(rng.choice(GREETINGS))
        else:
            parts.insert(rng.randrange(len(parts)), rng.choice(CLOSINGS).format(ref=ref))
    if rng.random() < rate["repeat"]:                             # the same sentence twice
        i = rng.randrange(len(parts))
        parts.insert(i + 1, parts[i])
    if mistakes and rng.random() < rate["garbled"]:               # one sentence garbled
        i = rng.randrange(len(parts))
        parts[i] = garble(parts[i], rng, others=[s for s in parts if s != parts[i]] or ADVICE)
    if mistakes and rng.random() < rate["cut"]:                   # cut off in the last sentence
        ws = parts[-1].split()
        if len(ws) > 1:
            parts[-1] = " ".join(ws[:rng.randrange(1, len(ws))]).rstrip(",")
    return " ".join(parts)


DEFECTS = ("garbled", "cut off", "greeting at the end", "sign-off in the middle", "said twice",
           "another topic's answer", "sign-off about another topic", "rude", "no answer", "another question's answer")


def with_defect(prompt: Prompt, reply: str, defect: str, rng: random.Random) -> str | None:
    """``reply`` with one :data:`DEFECTS` added, everything else the same; None if it does not apply.

    A pair (reply, with_defect(reply)) differs in one thing only: a *minimal pair*, the clearest lesson
    a rater's click can teach a reward model about what that one thing costs.
    """
    sentences, rest = split_sentences(reply)
    if rest or not sentences:
        return None
    g, topic = grammar(), prompt.topic
    other = rng.choice([t for t in TOPIC_REF if t != topic])
    answer_at = [i for i, s in enumerate(sentences) if g.get(s) and g[s].role == "answer"]
    out = list(sentences)
    if defect == "garbled":
        i = rng.randrange(len(out))
        out[i] = garble(out[i], rng, others=[s for s in out if s != out[i]] or ADVICE)
    elif defect == "cut off":
        ws = out[-1].split()
        if len(ws) < 2:
            return None
        out[-1] = " ".join(ws[:rng.randrange(1, len(ws))]).rstrip(",")
    elif defect == "greeting at the end":
        out.append(rng.choice(GREETINGS))
    elif defect == "sign-off in the middle":
        if len(out) < 2:
            return None
        out.insert(rng.randrange(len(out) - 1), rng.choice(CLOSINGS).format(ref=TOPIC_REF.get(topic, topic)))
    elif defect == "said twice":
        i = rng.randrange(len(out))
        out.insert(i + 1, out[i])
    elif defect == "another topic's answer":
        if not answer_at or topic not in ANSWERS:
            return None
        i = rng.choice(answer_at)
        out[i] = _answer(other, g[out[i]].kind)
    elif defect == "sign-off about another topic":   # needs a sign-off about the prompt's topic to swap
        signoffs = [i for i, s in enumerate(out) if g.get(s) and g[s].role == "closing" and g[s].topic == topic]
        if not signoffs:
            return None
        template = next(c for c in CLOSINGS if "{ref}" in c and c.format(ref=TOPIC_REF[topic]) == out[signoffs[-1]])
        out[signoffs[-1]] = template.format(ref=TOPIC_REF[other])
    elif defect == "rude":
        out.insert(rng.randrange(len(out) + 1), rng.choice(RUDE_LINES))
    elif defect == "no answer":
        if not answer_at:
            return None
        out[rng.choice(answer_at)] = _capitalised(rng.choice(TOPIC_LINES).format(ref=TOPIC_REF.get(topic, topic)))
    elif defect == "another question's answer":
        asks = prompt.asks
        fitting = [i for i in answer_at if g[out[i]].kind in asks and g[out[i]].topic == topic]
        if not fitting:
            return None
        out[fitting[0]] = _answer(topic, rng.choice([k for k in ANSWER_KINDS if k not in asks]))
    else:
        raise ValueError(f"unknown defect {defect!r}; one of {DEFECTS}")
    out = " ".join(out)
    return out if len(words(out)) <= 45 else None     # no longer than the longest candidates


def candidate_responses(prompt: Prompt, n: int, rng: random.Random, mistakes: bool = True) -> list[str]:
    """``n`` replies to ``prompt`` of mixed quality (duplicates possible), made of phrasebook sentences.

    Each is built from an optional greeting, opinion or rude line; an answer to what was asked (45%),
    an answer to another question on the topic (15%), a line naming the topic, or nothing; 0-2 general
    advice sentences; maybe a hedge; an optional sign-off; and now and then a drift to another topic
    (10%), a greeting or sign-off out of place (6%) or a sentence said twice (5%). With ``mistakes``
    (the default), also: 4% empty or a word or two, 10% with one garbled sentence, 7% cut off.
    Lengths are mostly 3-35 words: long, stacked replies are rare *on purpose*, so a reward model
    learned from these has never seen them (notebook 08's over-optimisation).
    """
    return [_one_candidate(prompt, rng, mistakes) for _ in range(n)]


def response_corpus(prompts: Sequence[Prompt], per_prompt: int, seed: int) -> list[tuple[Prompt, str]]:
    """(prompt, reply) pairs for pretraining the tiny LM: ``per_prompt`` candidates per prompt, all
    well-formed and finished (``mistakes=False``): the model learns the world's grammar, and its
    content stays as mixed as the candidates' (vague, rude, off topic, unanswered, ...)."""
    rng = random.Random(seed)
    return [(p, r) for p in prompts for r in candidate_responses(p, per_prompt, rng, mistakes=False)]


def _check_phrasebook() -> None:
    """Every answer names its own topic and no other; every other sentence names no topic."""
    for topic, answers in ANSWERS.items():
        for s in answers:
            if topics_in(s) != {topic}:
                raise AssertionError(f"answer {s!r} for {topic!r} names the topics {sorted(topics_in(s))}")
    for s in GREETINGS + OPINIONS + ADVICE + VAGUE + RUDE_LINES + SHORT:
        if topics_in(s):
            raise AssertionError(f"{s!r} names a topic: {sorted(topics_in(s))}")
    if set(ANSWERS) != set(TOPIC_REF):
        raise AssertionError(f"topics without answers: {sorted(set(TOPIC_REF) - set(ANSWERS))}")


_check_phrasebook()


# ----------------------------------------------------------------------------- the rater
def sigmoid(x: float) -> float:
    """1 / (1 + exp(-x)), safe for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


#: Cut points on a simulated rater's noisy reading of the gold reward between the scores 1|2|3|4|5. Gold
#: rewards run from about -4 to +4; without noise the world's candidate responses score 1..5 about
#: 15/15/25/30/15 % of the time.
SCORE_CUTS: tuple[float, ...] = (-0.5, 1.0, 2.0, 3.0)


@dataclass
class SimulatedRater:
    """A Bradley-Terry rater: shown ``a`` first and ``b`` second, prefers ``a`` with probability sigmoid(logit),

        logit = s * (u(a) - u(b)) / temperature          # taste: gold, plus the rater's own ``taste``
              + length_bias * (words(a) - words(b))     # bias 1: longer (> 0) or shorter (< 0) replies
              + position_bias                           # bias 2: the reply shown first

    where ``u(y) = gold_reward(y) + sum_k taste[k] * gold_reward_parts(y)[k]`` (with no ``taste``, u is gold)
    and ``s`` is +1, or -1 for a ``contrarian`` (someone who clicks the worse reply on purpose, or misread the
    buttons): the same noise, the opposite taste. Each term is one readable number; with the defaults the
    rater is the course's unbiased one. A group of people with a taste of their own is a rater with
    ``taste`` set, e.g. ``{"polite": 1.0}`` (politeness counts twice) or ``length_bias=-0.1`` (brevity).
    """
    temperature: float = 1.0   # rater noise: 0 = always the better response, large = coin flip
    seed: int = 0              # seed of the rater's own random.Random (its clicks are repeatable)
    name: str = "simulated"    # written as ``rater`` in every record it makes
    contrarian: bool = False   # True: prefers the reply gold likes less
    length_bias: float = 0.0   # logit added per word the first reply is longer than the second
    position_bias: float = 0.0  # logit added for the reply shown first (> 0: prefers what it sees first)
    taste: dict[str, float] | None = None  # extra weight per gold part, e.g. {"polite": 1.0}
    rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        unknown = set(self.taste or ()) - set(GOLD_PARTS)
        if unknown:
            raise ValueError(f"taste names unknown gold parts {sorted(unknown)}; the parts are {list(GOLD_PARTS)}")
        self.rng = random.Random(self.seed)

    def utility(self, prompt: Prompt | str, response: str) -> float:
        """What this rater's taste makes of ``response``: the gold reward plus ``taste``'s extra weights."""
        if not self.taste:
            return gold_reward(prompt, response)
        parts = gold_reward_parts(prompt, response)
        return sum(parts.values()) + sum(w * parts[k] for k, w in self.taste.items())

    def bias_logit(self, a: str, b: str) -> float:
        """The biases' share of the logit for ``a`` shown first: ``length_bias * (words(a) - words(b)) + position_bias``."""
        if not (self.length_bias or self.position_bias):
            return 0.0
        return self.length_bias * (len(words(a)) - len(words(b))) + self.position_bias

    def prob_first(self, prompt: Prompt | str, a: str, b: str) -> float:
        """P(this rater prefers ``a``, shown first, over ``b``). At temperature 0 the taste decides (1 or 0),
        and only where it has no favourite do the biases (0.5 without them)."""
        diff = self.utility(prompt, a) - self.utility(prompt, b)
        if self.contrarian:
            diff = -diff
        if self.temperature == 0:
            return sigmoid(self.bias_logit(a, b)) if diff == 0 else float(diff > 0)
        return sigmoid(diff / self.temperature + self.bias_logit(a, b))

    def prefers_first(self, prompt: Prompt | str, a: str, b: str) -> bool:
        """One noisy click: True if the rater picks ``a`` (the reply shown first)."""
        return self.rng.random() < self.prob_first(prompt, a, b)

    def score(self, prompt: Prompt | str, response: str) -> int:
        """A 1-5 score: this rater's noisy reading of its utility (the gold reward, for a rater without taste),
        binned by ``SCORE_CUTS``. (The pairwise biases, length and position, play no part in a score.)

        The noisy reading is ``s * u + T * (g - 0.5772)`` with ``g`` a standard Gumbel draw from the
        rater's own generator, ``T`` its temperature and ``s`` = -1 for a contrarian (else +1). That is the
        random-utility form of Bradley-Terry: comparing two such readings picks A with probability
        ``sigmoid(s * (u(A) - u(B)) / T)``, exactly the unbiased rater's pairwise clicks, so the same simulated
        person gives both the pairs and the scores.
        """
        u = self.rng.random() or 1e-12
        value = -self.utility(prompt, response) if self.contrarian else self.utility(prompt, response)
        noisy = value + self.temperature * (-math.log(-math.log(u)) - 0.5772156649)
        return 1 + sum(noisy >= cut for cut in SCORE_CUTS)

    def rate(self, prompt: Prompt | str, a: str, b: str, source: str | None = None) -> PreferenceRecord:
        """Show ``a`` first and ``b`` second, record the choice (and which was shown first) as a ``PreferenceRecord``."""
        text = prompt_text(prompt)
        first = self.prefers_first(prompt, a, b)
        chosen, rejected = (a, b) if first else (b, a)
        return PreferenceRecord(text, chosen, rejected, rater=self.name, source=source,
                                shown_first="chosen" if first else "rejected")


def bayes_ceiling(pairs: Sequence[tuple[Prompt | str, str, str]], temperature: float) -> float:
    """Best expected accuracy of ANY model predicting this rater's choices on ``pairs``.

    The best guess for a pair is the side the rater picks more often, right with probability
    max(p, 1 - p) where p = P(first preferred); the ceiling is the mean of that over the pairs.
    """
    if not pairs:
        raise ValueError("bayes_ceiling needs at least one pair")
    rater = SimulatedRater(temperature=temperature)
    return sum(max(p, 1 - p) for p in (rater.prob_first(*pair) for pair in pairs)) / len(pairs)


def make_pairs(prompts: Sequence[Prompt], n_pairs: int, seed: int) -> list[tuple[Prompt, str, str]]:
    """``n_pairs`` of (prompt, a, b): a random prompt and two distinct candidate responses."""
    if not prompts:
        raise ValueError("make_pairs needs at least one prompt")
    rng = random.Random(seed)
    pairs = []
    for _ in range(n_pairs):
        prompt = rng.choice(prompts)
        a = _one_candidate(prompt, rng)
        b = _one_candidate(prompt, rng)
        while b == a:
            b = _one_candidate(prompt, rng)
        pairs.append((prompt, a, b))
    return pairs


def simulate_preferences(n_pairs: int, temperature: float = 1.0, seed: int = 0,
                         prompts: Sequence[Prompt] | None = None) -> list[PreferenceRecord]:
    """``n_pairs`` simulated clicks on ``make_pairs(prompts, n_pairs, seed)`` (all shipped prompts by default)."""
    prompts = load_prompts() if prompts is None else prompts
    rater = SimulatedRater(temperature=temperature, seed=seed)
    return [rater.rate(p, a, b, source="candidates") for p, a, b in make_pairs(prompts, n_pairs, seed)]


# ----------------------------------------------------------------------------- demo
def _demo(n_prompts: int = 3, n_candidates: int = 4, seed: int = 0) -> None:
    rng = random.Random(seed)
    for prompt in rng.sample(load_prompts(), n_prompts):
        print(f"\nPROMPT ({prompt.kind}, topic {prompt.topic!r}, asks {prompt.asks}): {prompt.text}")
        for response in candidate_responses(prompt, n_candidates, rng):
            parts = gold_reward_parts(prompt, response)
            detail = ", ".join(f"{k} {v:+.2f}" for k, v in parts.items() if v)
            print(f"  {sum(parts.values()):+5.2f}  {response!r}\n         ({detail or 'all parts 0'})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-prompts", action="store_true", help=f"rebuild {PROMPTS_PATH}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.write_prompts:
        print(f"wrote {len(build_prompts(args.seed))} prompts to {write_prompts(seed=args.seed)}")
    else:
        _demo(seed=args.seed)
