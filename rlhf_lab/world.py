"""The simulated-human world: prompts, a gold reward, and a simulated rater.

Real RLHF needs people to read pairs of responses and click the better one. A class
cannot click thousands of pairs, so the course ships a small world where "what people
prefer" is written down as a readable Python function, the **gold reward**:

* **helpful**: the response gives concrete advice ("try", "start by", "you could", ...),
* **on topic**: it mentions what the prompt is about (the prompt's topic, e.g. "garden"),
* **polite**: "please", "thanks", "good luck" help; "whatever", "stupid", "no idea" hurt,
* **not repetitive**: saying the same word pair again and again costs more and more,
* **not too long, not empty**: about 8 to 30 words is fine; shorter or longer costs.

A **simulated rater** reads two responses and prefers A with probability
``sigmoid((gold(A) - gold(B)) / temperature)`` (the Bradley-Terry model). The temperature is
rater noise: 0 always picks the better one, 1 is a moderate amount of disagreement, large
values are coin flips. Because the gold reward is known, we can compute things real RLHF can
only guess: the best accuracy any reward model could reach on these noisy clicks
(``bayes_ceiling``), and whether a policy's reward is real or a loophole (over-optimisation).

Responses here come from ``candidate_responses``: sentences glued from small templates, of
mixed quality, so the world needs no model at all. The tiny language model of notebook 04 is
pretrained on exactly these responses (``response_corpus``).

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
from rlhf_lab.preferences import DataFileError, PreferenceRecord

PROMPTS_PATH = DATA / "prompts.jsonl"
KINDS = ("plan", "question", "request")


# ----------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Prompt:
    """One user message. ``topic`` is a word or phrase that appears in ``text``."""
    text: str    # what the user wrote
    topic: str   # lowercase topic word/phrase, e.g. "garden" or "job interview"
    kind: str    # "plan", "question" or "request"


def prompt_text(prompt: Prompt | str) -> str:
    """The text of a :class:`Prompt`, or the string itself (every function that takes either calls this)."""
    text = getattr(prompt, "text", prompt)
    if not isinstance(text, str):
        raise TypeError(f"a prompt must be a str or a world.Prompt, got {type(prompt).__name__}")
    return text


# (topic, verb phrase for "my plan to ...", noun phrase for "advice on ...", how a reply names it)
TOPICS: tuple[tuple[str, str, str, str], ...] = (
    ("garden", "start a vegetable garden", "my vegetable garden", "your garden"),
    ("budget", "stick to a monthly budget", "my monthly budget", "your budget"),
    ("marathon", "run a marathon", "training for a marathon", "the marathon"),
    ("python", "learn Python", "learning Python", "Python"),
    ("guitar", "learn the guitar", "playing the guitar", "the guitar"),
    ("job interview", "prepare for a job interview", "my job interview", "your job interview"),
    ("new city", "move to a new city", "moving to a new city", "the new city"),
    ("cooking", "get into cooking at home", "cooking at home", "cooking"),
    ("sleep", "fix my sleep schedule", "my sleep schedule", "your sleep"),
    ("bike", "ride my bike to work", "riding my bike to work", "the bike"),
    ("spanish", "learn Spanish", "learning Spanish", "Spanish"),
    ("savings", "build up my savings", "my savings", "your savings"),
    ("dog", "adopt a dog", "adopting a dog", "the dog"),
    ("kitchen", "fix up my kitchen", "fixing up my kitchen", "your kitchen"),
    ("blog", "start a blog", "starting a blog", "your blog"),
    ("piano", "learn the piano", "playing the piano", "the piano"),
    ("chess", "get better at chess", "playing chess", "chess"),
    ("diet", "eat a healthier diet", "a healthier diet", "your diet"),
    ("exam", "pass my math exam", "my math exam", "the exam"),
    ("camping", "go camping this summer", "a camping trip", "camping"),
    ("wedding", "plan a small wedding", "a small wedding", "the wedding"),
    ("books", "read more books", "reading more books", "the books"),
    ("yoga", "start doing yoga", "doing yoga", "yoga"),
    ("coffee", "drink less coffee", "drinking less coffee", "coffee"),
    ("birthday party", "throw a birthday party", "a birthday party", "the birthday party"),
    ("photography", "take up photography", "learning photography", "photography"),
    ("resume", "update my resume", "my resume", "your resume"),
    ("startup", "launch a small startup", "a small startup", "the startup"),
    ("swimming", "take swimming lessons", "swimming lessons", "swimming"),
    ("meditation", "try meditation every morning", "daily meditation", "meditation"),
    ("apartment", "rent a new apartment", "renting an apartment", "the apartment"),
    ("car", "buy a used car", "buying a used car", "the car"),
    ("painting", "take up painting", "painting with watercolors", "painting"),
    ("podcast", "start a podcast", "starting a podcast", "the podcast"),
    ("vacation", "plan a beach vacation", "a beach vacation", "the vacation"),
    ("gym", "go to the gym three times a week", "going to the gym", "the gym"),
    ("garage", "clean out the garage", "cleaning out the garage", "the garage"),
    ("phone", "spend less time on my phone", "screen time on my phone", "your phone"),
    ("volunteering", "start volunteering on weekends", "volunteering", "volunteering"),
    ("bread", "bake my own bread", "baking bread", "the bread"),
    ("team", "lead a new team at work", "leading a team at work", "your team"),
    ("hiking", "go hiking in the mountains", "hiking in the mountains", "hiking"),
    ("knitting", "learn knitting", "knitting a scarf", "knitting"),
    ("taxes", "do my own taxes", "doing my own taxes", "your taxes"),
    ("house plants", "keep my house plants alive", "my house plants", "your house plants"),
)
TOPIC_REF = {t: ref for t, _, _, ref in TOPICS}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "plan": ("What do you think about my plan to {plan}?",   # the seed lesson's question, made concrete
             "I want to {plan}. Is this a good plan?",
             "My plan is to {plan} next month. What do you think?",
             "Should I {plan} this year?",
             "Is it a good idea to {plan}?"),
    "question": ("What is the best way to {plan}?",
                 "How do I {plan} without stress?",
                 "What should I know about {about}?",
                 "Is it hard to {plan}?",
                 "How much time does it take to {plan}?"),
    "request": ("Please give me some advice on {about}.",
                "Can you help me {plan}?",
                "Help me make a plan to {plan}.",
                "Give me one tip for {about}.",
                "I need help with {about}."),
}


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
        for kind, template in picks:
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


@functools.lru_cache(maxsize=4096)
def topic_of(text: str) -> str | None:
    """The known topic mentioned in ``text`` (the longest if several), or None."""
    ws = words(text)
    found = [t for t, *_ in TOPICS if mentions(ws, t)]
    return max(found, key=len) if found else None


def repeated_fraction(ws: Sequence[str]) -> float:
    """Fraction of word pairs (bigrams) that already occurred earlier: 0 = no repeats.

    ``"try this try this try this"`` has bigrams (try this), (this try), (try this), ...: 3 of 5 repeat.
    """
    pairs = list(zip(ws, ws[1:]))
    return 1 - len(set(pairs)) / len(pairs) if pairs else 0.0


STOPWORDS = frozenset("a an the and or but to of in on for at by with my your i you me is it this that "
                      "what how do does should can about any some think would could".split())


# ----------------------------------------------------------------------------- gold reward
HELPFUL = ("try", "start by", "start small", "you could", "step", "steps", "first", "write down",
           "make a list", "practice", "ask", "plan a")
POLITE = ("please", "thanks", "thank you", "happy to help", "good luck", "hope this helps")
RUDE = ("whatever", "stupid", "no idea", "figure it out yourself", "do not care", "waste of time", "boring")


def length_score(n_words: int) -> float:
    """0 for 8-30 words; empty -4, 1-2 words -2.5, 3-7 words -0.25 per missing word, -0.1 per word over 30."""
    if n_words == 0:
        return -4.0
    if n_words <= 2:
        return -2.5
    if n_words < 8:
        return -0.25 * (8 - n_words)
    return -0.1 * max(0, n_words - 30)


def on_topic(prompt: Prompt | str, ws: Sequence[str]) -> bool:
    """Does the response (as words ``ws``) mention the prompt's topic?

    For a free-text prompt with no known topic, any shared content word counts.
    """
    topic = prompt.topic if isinstance(prompt, Prompt) else topic_of(prompt)
    if topic is not None:
        return mentions(ws, topic)
    content = {w for w in words(prompt) if w not in STOPWORDS and len(w) > 2}
    return bool(content & set(ws))


def gold_reward_parts(prompt: Prompt | str, response: str) -> dict[str, float]:
    """The gold reward's named parts; they sum to ``gold_reward(prompt, response)``."""
    ws = words(response)
    return {
        "helpful": 1.0 * min(count_phrases(ws, HELPFUL), 2),           # up to 2 pieces of advice count
        "on_topic": 1.0 if on_topic(prompt, ws) else 0.0,
        "polite": 0.5 * min(count_phrases(ws, POLITE), 2) - 1.5 * min(count_phrases(ws, RUDE), 2),
        "repetitive": -5.0 * repeated_fraction(ws),                     # grows with every repeat
        "length": length_score(len(ws)),
    }


def gold_reward(prompt: Prompt | str, response: str) -> float:
    """What people prefer, as a number: about -4 (rude, empty) to +4 (polite, on topic, helpful)."""
    return sum(gold_reward_parts(prompt, response).values())


# ----------------------------------------------------------------------------- candidates
GREETINGS = ("Hi!", "Sure.", "Great question!", "Happy to help.", "Thanks for asking.", "Good question.", "Hello!")
OPINIONS = ("Great idea!", "Not sure about that.", "Interesting thought.",   # the seed lesson's replies
            "That sounds like a good plan.", "I like this plan.", "This could work well.",
            "That is a big goal, but you can do it.")
TOPIC_LINES = ("Here is how I would approach {ref}.", "Let us talk about {ref}.",
               "I think {ref} will be worth it.", "It is great that you care about {ref}.")
ADVICE = ("Start by setting one small goal for this week.", "Try to spend twenty minutes on it every day.",
          "First, write down what you need.", "You could ask a friend to join you.",
          "Make a list and check it every morning.", "Take it one step at a time.",
          "Keep a short note of your progress.", "Try a small test run before you commit.",
          "You could find a short guide or a class nearby.", "Break it into small steps and do one each day.",
          "Plan a rest day each week so you do not burn out.", "Ask someone who has done it for one tip.",
          "Start small and build up slowly.", "Practice a little every day.", "First, pick a date to start.")
VAGUE = ("It depends.", "Hard to say.", "Maybe.", "Who knows.", "It could work, or it could not.",
         "I am not sure.", "Time will tell.")
RUDE_LINES = ("Whatever.", "That is a stupid idea.", "No idea, figure it out yourself.", "I do not care.",
              "Sounds boring.", "What a waste of time.")
CLOSINGS = ("Good luck!", "Hope this helps.", "Happy to help.", "Thanks for asking!",
            "Please let me know how it goes.", "You can do it!", "Good luck with {ref}!")
OFF_TOPIC = ("Have you thought about {ref} instead?", "Maybe think about {ref} first.")
SHORT = ("", "Ok.", "Yes.", "No.", "Sure.", "Hmm.", "Great idea!")


def _one_candidate(prompt: Prompt, rng: random.Random) -> str:
    """One template-composed response of random quality (see ``candidate_responses``)."""
    ref = TOPIC_REF.get(prompt.topic, prompt.topic)
    r = rng.random()
    if r < 0.05:                                   # degenerate: empty or one or two words
        return rng.choice(SHORT)
    if r < 0.09:                                   # degenerate: one line said two or three times
        line = rng.choice(ADVICE + CLOSINGS + OPINIONS + VAGUE).format(ref=ref)
        return " ".join([line] * rng.randint(2, 3))
    parts: list[str] = []
    if rng.random() < 0.35:
        parts.append(rng.choice(GREETINGS))
    if rng.random() < (0.5 if prompt.kind == "plan" else 0.15):
        parts.append(rng.choice(OPINIONS))
    if rng.random() < 0.12:
        parts.append(rng.choice(RUDE_LINES))
    advice = rng.sample(ADVICE, rng.choices((0, 1, 2), weights=(3, 5, 3))[0])
    mode = rng.choices(("on", "off", "none"), weights=(6, 1, 3))[0]
    if mode == "on" and advice and rng.random() < 0.5:  # "For your garden, start by ..."
        advice[0] = f"For {ref}, {advice[0][0].lower()}{advice[0][1:]}"
    elif mode == "on":
        parts.append(rng.choice(TOPIC_LINES).format(ref=ref))
    elif mode == "off":
        other = rng.choice([t for t in TOPIC_REF if t != prompt.topic])
        parts.append(rng.choice(OFF_TOPIC).format(ref=TOPIC_REF[other]))
    if not advice and rng.random() < 0.5:
        parts.append(rng.choice(VAGUE))
    parts += advice
    if rng.random() < 0.4:
        parts.append(rng.choice(CLOSINGS).format(ref=ref))
    if parts and rng.random() < 0.04:              # now and then a line gets repeated
        parts.append(rng.choice(parts))
    if not parts:
        parts.append(rng.choice(VAGUE))
    return " ".join(parts)


def candidate_responses(prompt: Prompt, n: int, rng: random.Random) -> list[str]:
    """``n`` template-composed responses of mixed quality to ``prompt`` (duplicates possible).

    Each is built from an optional greeting, opinion or rude line, an on-topic, off-topic or no
    topic mention, 0-2 advice sentences, maybe a vague line, an optional polite closing, and
    rarely a repeated line; 5% are empty or one or two words. Lengths are mostly 3-30 words:
    long, highly repetitive responses are rare *on purpose*, so a reward model learned from these
    has never seen what happens when good phrases are stacked (notebook 08's over-optimisation).
    """
    return [_one_candidate(prompt, rng) for _ in range(n)]


def response_corpus(prompts: Sequence[Prompt], per_prompt: int, seed: int) -> list[tuple[Prompt, str]]:
    """(prompt, response) pairs for pretraining the tiny LM: ``per_prompt`` candidates per prompt."""
    rng = random.Random(seed)
    return [(p, r) for p in prompts for r in candidate_responses(p, per_prompt, rng)]


# ----------------------------------------------------------------------------- the rater
def sigmoid(x: float) -> float:
    """1 / (1 + exp(-x)), safe for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass
class SimulatedRater:
    """A Bradley-Terry rater: prefers A with probability sigmoid((gold(A) - gold(B)) / temperature)."""
    temperature: float = 1.0   # rater noise: 0 = always the better response, large = coin flip
    seed: int = 0              # seed of the rater's own random.Random (its clicks are repeatable)
    name: str = "simulated"    # written as ``rater`` in every record it makes
    rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        self.rng = random.Random(self.seed)

    def prob_first(self, prompt: Prompt | str, a: str, b: str) -> float:
        """P(this rater prefers ``a`` over ``b``); with temperature 0: 1, 0, or 0.5 for a tie."""
        diff = gold_reward(prompt, a) - gold_reward(prompt, b)
        if self.temperature == 0:
            return 0.5 if diff == 0 else float(diff > 0)
        return sigmoid(diff / self.temperature)

    def prefers_first(self, prompt: Prompt | str, a: str, b: str) -> bool:
        """One noisy click: True if the rater picks ``a``."""
        return self.rng.random() < self.prob_first(prompt, a, b)

    def rate(self, prompt: Prompt | str, a: str, b: str, source: str | None = None) -> PreferenceRecord:
        """Show ``a`` and ``b``, record the choice as a ``PreferenceRecord``."""
        text = prompt_text(prompt)
        chosen, rejected = (a, b) if self.prefers_first(prompt, a, b) else (b, a)
        return PreferenceRecord(text, chosen, rejected, rater=self.name, source=source)


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
        print(f"\nPROMPT ({prompt.kind}, topic {prompt.topic!r}): {prompt.text}")
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
