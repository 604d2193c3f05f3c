"""Do raters agree? Agreement statistics and rater noise for a classroom's pooled ratings.

A reward model can only learn what raters agree on. When a class pools its clicks, four questions
come first:

1. **Align the raters** (``rating_table``): which items did each rater label, and how? An item is a
   *pair* ``(prompt, frozenset({text_1, text_2}))`` for ``PreferenceRecord`` s, or a scored reply
   ``(prompt, response)`` for ``ScoreRecord`` s. The table has one row per item and one column per
   rater, ``None`` where a rater did not label the item; a rater's latest record about an item wins.
2. **Measure agreement**: ``raw_agreement`` (share of shared items labelled the same),
   ``cohen_kappa`` (two raters, corrected for chance; Cohen 1960) and ``krippendorff_alpha`` (any
   number of raters, missing labels, nominal/ordinal/interval labels; Krippendorff 2011).
   ``pairwise_kappa`` / ``kappa_matrix`` give kappa for every pair of raters.
3. **Estimate each rater's noise** (``fit_rater_temperature``): the world's raters click A with
   probability ``sigmoid((gold(A) - gold(B)) / T)``; given the gold reward we can fit ``T`` per rater
   by maximum likelihood, and a negative fit unmasks a contrarian. ``fit_rater_biases`` fits a rater's
   length and position biases beside the noise (``fit_logistic``: the same Newton's method in three
   parameters), for notebook 10's biased panels.
4. **Pool a panel** (notebook 10): ``majority_vote`` (one label per pair), ``without_raters`` (drop some),
   or keep every click and give each rater their own temperature
   (``linear_reward.train_linear_reward_model(..., rater_slopes=...)``).

``simulated_class`` and ``class_ratings`` make a class of simulated students for notebook 02::

    >>> from rlhf_lab import agreement, world
    >>> pairs = world.make_pairs(world.load_prompts(), 40, seed=0)
    >>> students = agreement.simulated_class(20, seed=0)
    >>> records = agreement.class_ratings(students, pairs, per_rater=25, seed=0)
    >>> table = agreement.rating_table(records)
    >>> round(agreement.krippendorff_alpha(table), 2)          # doctest: +SKIP
    >>> fits = agreement.fit_rater_temperature(records)
    >>> [f.rater for f in fits.values() if f.contrarian]       # doctest: +SKIP
    ['student-..']

Pair labels are ``"A"``, ``"B"`` or ``"tie"``, where ``A`` is the alphabetically first text of the
pair (``pair_texts``). Both say which text was chosen; the point of a shared A/B code is that the
chance terms of kappa and alpha compare like with like. (Were the label the chosen text itself,
every pair would have its own two categories, chance agreement would look like 0, and kappa would
just repeat the raw agreement.)
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Sequence

import numpy as np

from rlhf_lab import world
from rlhf_lab.preferences import PreferenceRecord, ScoreRecord

Label = Hashable          # "A" / "B" / "tie" for pairs, 1..5 for scores
Item = tuple              # (prompt, frozenset of the two texts) or (prompt, response)
TIE = "tie"
LEVELS = ("nominal", "ordinal", "interval")


# ----------------------------------------------------------------------------- 1. aligning raters
@dataclass
class RatingTable:
    """Items x raters: ``labels[i][j]`` is rater ``raters[j]``'s label of ``items[i]``, None if not rated."""
    items: list[Item]                     # one key per row, in order of first appearance
    raters: list[str]                     # one name per column, in order of first appearance
    labels: list[list[Label | None]]      # shape (len(items), len(raters))

    def column(self, rater: str) -> list[Label | None]:
        """One rater's labels, aligned with ``items`` (None where the rater did not rate the item)."""
        j = self.raters.index(rater)
        return [row[j] for row in self.labels]


def pair_texts(item: Item) -> tuple[str, str]:
    """The two texts of a pair item as ``(A, B)``: alphabetical order, the order the labels refer to."""
    a, b = sorted(item[1])
    return a, b


def item_and_label(record: PreferenceRecord | ScoreRecord) -> tuple[Item, Label]:
    """The item a record is about and the rater's label of it.

    ``PreferenceRecord``: ``((prompt, frozenset({chosen, rejected})), "A" | "B" | "tie")``;
    ``ScoreRecord``: ``((prompt, response), score)``.
    """
    if isinstance(record, ScoreRecord):
        return (record.prompt, record.response), record.score
    if isinstance(record, PreferenceRecord):
        if record.chosen == record.rejected:
            raise ValueError(f"a pair needs two different texts, got {record.chosen!r:.60} twice")
        item = (record.prompt, frozenset((record.chosen, record.rejected)))
        return item, TIE if record.tie else "A" if record.chosen == pair_texts(item)[0] else "B"
    raise TypeError(f"expected a PreferenceRecord or ScoreRecord, got {type(record).__name__}")


def rating_table(records: Iterable[PreferenceRecord | ScoreRecord]) -> RatingTable:
    """Pool many raters' records into an items x raters :class:`RatingTable`.

    Records are read in order, so a rater's *latest* record about an item (the last in the list, as a
    preference file is appended click by click) replaces any earlier one. Preference and score records
    cannot be mixed: they label different things.
    """
    latest: dict[tuple[Item, str], Label] = {}
    items: dict[Item, None] = {}          # dicts keep first-appearance order
    raters: dict[str, None] = {}
    kinds = set()
    for r in records:
        item, label = item_and_label(r)
        kinds.add(type(r))
        latest[(item, r.rater)] = label
        items.setdefault(item)
        raters.setdefault(r.rater)
    if len(kinds) > 1:
        raise ValueError("rating_table got both PreferenceRecords and ScoreRecords; pass one kind")
    labels = [[latest.get((item, rater)) for rater in raters] for item in items]
    return RatingTable(list(items), list(raters), labels)


def _as_table(data: RatingTable | Iterable[PreferenceRecord | ScoreRecord]) -> RatingTable:
    return data if isinstance(data, RatingTable) else rating_table(data)


# ----------------------------------------------------------------------------- 2. agreement
def _both_rated(labels_a: Sequence[Label | None], labels_b: Sequence[Label | None]) -> list[tuple[Label, Label]]:
    if len(labels_a) != len(labels_b):
        raise ValueError(f"the two label lists must be aligned item by item, got lengths {len(labels_a)} "
                         f"and {len(labels_b)}")
    both = [(a, b) for a, b in zip(labels_a, labels_b) if a is not None and b is not None]
    if not both:
        raise ValueError("the two raters share no item (no position where both labels are not None)")
    return both


def raw_agreement(labels_a: Sequence[Label | None], labels_b: Sequence[Label | None]) -> float:
    """Share of the items rated by both (neither label None) that got the same label (a tie is a label)."""
    both = _both_rated(labels_a, labels_b)
    return sum(a == b for a, b in both) / len(both)


def cohen_kappa(labels_a: Sequence[Label | None], labels_b: Sequence[Label | None]) -> float:
    """Cohen's kappa of two raters on the items both rated (Cohen 1960, Educ. Psychol. Meas. 20:37-46).

    ``kappa = (p_o - p_e) / (1 - p_e)``: ``p_o`` is the observed agreement (``raw_agreement``) and
    ``p_e = sum_c p_a(c) p_b(c)`` the agreement expected by chance if each rater kept their own label
    frequencies but labelled at random. 1 = perfect, 0 = chance level, < 0 = worse than chance.
    Returns nan when ``p_e = 1`` (both raters used one and the same label throughout: no variation to agree on).
    """
    both = _both_rated(labels_a, labels_b)
    n = len(both)
    p_o = sum(a == b for a, b in both) / n
    categories = {a for a, _ in both} | {b for _, b in both}
    p_e = sum(sum(a == c for a, _ in both) * sum(b == c for _, b in both) for c in categories) / n**2
    return float("nan") if p_e == 1 else (p_o - p_e) / (1 - p_e)


def pairwise_kappa(data: RatingTable | Iterable[PreferenceRecord | ScoreRecord],
                   min_shared: int = 1) -> dict[tuple[str, str], float]:
    """Cohen's kappa for every pair of raters: ``{(rater_1, rater_2): kappa}``, rater_1 before rater_2 in the table.

    A pair sharing fewer than ``min_shared`` items gets nan (kappa on 2 shared items says little).
    """
    table = _as_table(data)
    out = {}
    for i, a in enumerate(table.raters):
        for b in table.raters[i + 1:]:
            col_a, col_b = table.column(a), table.column(b)
            shared = sum(x is not None and y is not None for x, y in zip(col_a, col_b))
            out[(a, b)] = cohen_kappa(col_a, col_b) if shared >= max(min_shared, 1) else float("nan")
    return out


def kappa_matrix(data: RatingTable | Iterable[PreferenceRecord | ScoreRecord],
                 min_shared: int = 1) -> tuple[list[str], np.ndarray]:
    """``(raters, K)``: ``K[i, j]`` = Cohen's kappa of raters i and j (symmetric, 1 on the diagonal), for a heat map."""
    table = _as_table(data)
    index = {r: i for i, r in enumerate(table.raters)}
    k = np.eye(len(table.raters))
    for (a, b), kappa in pairwise_kappa(table, min_shared).items():
        k[index[a], index[b]] = k[index[b], index[a]] = kappa
    return table.raters, k


def krippendorff_alpha(data: RatingTable | Sequence[Sequence[Label | None]], level: str = "nominal") -> float:
    """Krippendorff's alpha for any number of raters with missing labels.

    Follows Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C:

    * keep the *pairable* labels: those of items labelled by at least 2 raters (``m_u`` labels in item u);
    * coincidence matrix ``o[c, k] = sum_u (number of ordered pairs (c, k) of labels by different raters
      in item u) / (m_u - 1)``; its margins ``n_c = sum_k o[c, k]`` and total ``n = sum_c n_c``;
    * ``alpha = 1 - D_o / D_e = 1 - (n - 1) * sum_ck o[c, k] d2(c, k) / sum_ck n_c n_k d2(c, k)``,
      with the squared distance ``d2`` of the ``level``:

      - ``"nominal"``: 0 if c == k else 1 (any labels: "A"/"B"/"tie", scores, names);
      - ``"ordinal"``: ``(sum_{g from c to k} n_g - (n_c + n_k) / 2) ** 2``, g over the values ranked from c
        to k (numeric labels, e.g. 1-5 scores: only their order counts);
      - ``"interval"``: ``(c - k) ** 2`` (numeric labels whose differences mean something).

    ``data`` is a :class:`RatingTable` or rows of labels (items x raters, None = missing). 1 = perfect
    agreement, 0 = chance level; nan when only one value occurs (no variation, D_e = 0).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    rows = data.labels if isinstance(data, RatingTable) else data
    units = [[x for x in row if x is not None] for row in rows]
    units = [u for u in units if len(u) >= 2]                      # pairable items only
    if not units:
        raise ValueError("krippendorff_alpha needs at least one item labelled by two or more raters")
    values = sorted({x for u in units for x in u}, key=_sort_key(level))
    index = {v: i for i, v in enumerate(values)}

    o = np.zeros((len(values), len(values)))                     # the coincidence matrix
    for u in units:
        counts = np.zeros(len(values))
        for x in u:
            counts[index[x]] += 1
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(u) - 1)   # pairs of *different* raters
    n_c = o.sum(axis=1)
    n = n_c.sum()

    d2 = np.array([[_distance2(c, k, i, j, n_c, level) for j, k in enumerate(values)]
                   for i, c in enumerate(values)])
    expected = (np.outer(n_c, n_c) * d2).sum()
    if expected == 0:
        return float("nan")
    return float(1 - (n - 1) * (o * d2).sum() / expected)


def _sort_key(level: str) -> Callable[[Label], object]:
    if level == "nominal":
        return repr                                               # any labels, a fixed order
    def numeric(x: Label) -> float:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise TypeError(f"{level} alpha needs numeric labels (e.g. 1-5 scores), got {x!r}; "
                            "use level='nominal' for categories such as 'A'/'B'/'tie'")
        return float(x)
    return numeric


def _distance2(c: Label, k: Label, i: int, j: int, n_c: np.ndarray, level: str) -> float:
    """Squared distance between the values c (rank i) and k (rank j); Krippendorff 2011, section C."""
    if level == "nominal":
        return float(c != k)
    if level == "interval":
        return float(c - k) ** 2
    lo, hi = min(i, j), max(i, j)                                # ordinal
    return float(n_c[lo:hi + 1].sum() - (n_c[i] + n_c[j]) / 2) ** 2


# ----------------------------------------------------------------------------- 3. rater noise
@dataclass
class RaterFit:
    """One rater's fitted Bradley-Terry noise: P(chosen) = sigmoid(slope * (gold(chosen) - gold(rejected)))."""
    rater: str            # the rater's name
    n_clicks: int         # non-tie clicks used in the fit
    n_ties: int           # tie clicks, left out (Bradley-Terry has no ties)
    slope: float          # k = 1/T, the maximum-likelihood estimate; +-inf: every click agrees (or disagrees) with gold
    slope_se: float       # standard error of k: 1 / sqrt(Fisher information); nan at +-inf
    temperature: float    # T = 1/k with k's sign (negative: a contrarian); 0.0 when |k| is inf; nan with no data

    @property
    def contrarian(self) -> bool:
        """True if the fit says this rater prefers what gold likes less (k < 0)."""
        return self.slope < 0

    @property
    def temperature_se(self) -> float:
        """Standard error of T by the delta method: se(1/k) = se(k) / k**2."""
        return self.slope_se / self.slope**2 if self.slope not in (0.0, math.inf, -math.inf) else float("nan")


def fit_logistic(x: np.ndarray, tol: float = 1e-10, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood ``w`` of P(chosen) = sigmoid(x @ w), no intercept; returns (w, standard errors).

    x: (N, D), one row of features per click, signed so that every "label" is 1 (the rater chose
    ``chosen``). Log-likelihood ``L(w) = sum_i log sigmoid(x_i . w)``, gradient ``X^T (1 - p)``, Hessian
    ``-X^T diag(p (1 - p)) X``. L is concave, so Newton's method (halving a step that does not raise L)
    finds the maximum; the standard errors are the square roots of the diagonal of the inverse Fisher
    information ``(X^T diag(p (1 - p)) X)^-1``. If the clicks are separable (some w explains every click) the
    maximum is at infinity and the returned w is merely large.
    """
    x = np.asarray(x, dtype=float).reshape(len(x), -1)

    def loglik(w: np.ndarray) -> float:
        return float(-np.logaddexp(0.0, -x @ w).sum())           # log sigmoid(z) = -log(1 + e^-z)

    w = np.zeros(x.shape[1])
    for _ in range(max_iter):
        p = 1 / (1 + np.exp(-x @ w))
        grad, fisher = x.T @ (1 - p), (x * (p * (1 - p))[:, None]).T @ x
        step = np.linalg.lstsq(fisher, grad, rcond=None)[0]
        while loglik(w + step) < loglik(w) and np.abs(step).max() > tol:
            step /= 2
        w = w + step
        if np.abs(step).max() < tol * max(1.0, np.abs(w).max()):
            break
    p = 1 / (1 + np.exp(-x @ w))
    fisher = (x * (p * (1 - p))[:, None]).T @ x
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(np.diag(np.linalg.pinv(fisher)))
    return w, se


def fit_slope(gold_diffs: Sequence[float], tol: float = 1e-10, max_iter: int = 100) -> tuple[float, float]:
    """Maximum-likelihood ``k`` of P(chosen) = sigmoid(k * x), x = gold(chosen) - gold(rejected); returns (k, se).

    A 1-D logistic regression without intercept in which every "label" is 1 (the rater chose ``chosen``):
    ``fit_logistic`` with one column, ``se = 1 / sqrt(-L''(k))``. If no click goes against gold (every
    x >= 0, some > 0) the likelihood rises for ever: k = +inf (and -inf if none agrees).
    """
    x = np.asarray([d for d in gold_diffs if d != 0], dtype=float)   # x = 0 says nothing about k
    if len(x) == 0:
        return float("nan"), float("nan")
    if (x > 0).all():
        return math.inf, float("nan")
    if (x < 0).all():
        return -math.inf, float("nan")
    k, se = fit_logistic(x[:, None], tol, max_iter)
    return float(k[0]), float(se[0])


def fit_rater_temperature(records: Iterable[PreferenceRecord],
                          gold_fn: Callable[[str, str], float] = world.gold_reward) -> dict[str, RaterFit]:
    """Per rater, the maximum-likelihood Bradley-Terry temperature of their clicks: ``{rater: RaterFit}``.

    Model: the rater picks ``chosen`` with probability ``sigmoid((gold(chosen) - gold(rejected)) / T)``
    (``world.SimulatedRater``). We fit the slope ``k = 1/T`` (``fit_slope``) rather than T itself, because
    k is well behaved where T is not: k = 0 is a coin flip (T = inf), k < 0 a contrarian, and a rater who
    always agrees with gold has k = inf, reported as T = 0. Ties are left out; raters appear in order of
    their first record. A rater whose clicks carry no information (only ties, or only pairs gold scores
    equal) gets nan.
    """
    diffs: dict[str, list[float]] = {}
    ties: dict[str, int] = {}
    for r in records:
        diffs.setdefault(r.rater, [])
        ties.setdefault(r.rater, 0)
        if r.tie:
            ties[r.rater] += 1
        else:
            diffs[r.rater].append(gold_fn(r.prompt, r.chosen) - gold_fn(r.prompt, r.rejected))
    fits = {}
    for rater, xs in diffs.items():
        k, se = fit_slope(xs)
        temperature = float("nan") if math.isnan(k) else 0.0 if math.isinf(k) else math.inf if k == 0 else 1 / k
        fits[rater] = RaterFit(rater, len(xs), ties[rater], k, se, temperature)
    return fits


@dataclass
class RaterBiasFit:
    """One rater's fitted logit: P(chosen) = sigmoid(slope * d_gold + length_bias * d_words + position_bias * s),
    with d = chosen minus rejected and s = +1 if the chosen reply was shown first, -1 if second."""
    rater: str                 # the rater's name
    n_clicks: int              # non-tie clicks used in the fit
    slope: float               # 1 / temperature (negative: a contrarian)
    length_bias: float         # logit per word of length difference (> 0: likes longer replies)
    position_bias: float       # logit for being shown first (nan when no record says which was first)
    se: tuple[float, float, float]  # standard errors of the three

    @property
    def temperature(self) -> float:
        """T = 1 / slope (inf for a slope of 0)."""
        return math.inf if self.slope == 0 else 1 / self.slope


def bias_features(record: PreferenceRecord, gold_fn: Callable[[str, str], float] = world.gold_reward) -> list[float]:
    """``[d_gold, d_words, s]`` of one click (see :class:`RaterBiasFit`); s = 0 where ``shown_first`` is unknown."""
    side = {"chosen": 1.0, "rejected": -1.0}.get(record.shown_first, 0.0)
    return [gold_fn(record.prompt, record.chosen) - gold_fn(record.prompt, record.rejected),
            float(len(world.words(record.chosen)) - len(world.words(record.rejected))), side]


def fit_rater_biases(records: Iterable[PreferenceRecord],
                     gold_fn: Callable[[str, str], float] = world.gold_reward) -> dict[str, RaterBiasFit]:
    """Per rater, the maximum-likelihood noise *and* biases of their clicks: ``{rater: RaterBiasFit}``.

    The logit of ``world.SimulatedRater`` without taste, ``slope * d_gold + length_bias * d_words +
    position_bias * s``, fitted by ``fit_logistic`` against the gold reward (which the course knows). Ties
    are left out; a rater whose records never say which reply was shown first gets position_bias nan.
    """
    rows: dict[str, list[list[float]]] = {}
    for r in records:
        rows.setdefault(r.rater, [])
        if not r.tie:
            rows[r.rater].append(bias_features(r, gold_fn))
    fits = {}
    for rater, x in rows.items():
        x = np.asarray(x, dtype=float).reshape(-1, 3)
        used = [j for j in range(3) if len(x) and np.abs(x[:, j]).max() > 0]
        w, se = np.full(3, np.nan), np.full(3, np.nan)
        if used:
            w[used], se[used] = fit_logistic(x[:, used])
        fits[rater] = RaterBiasFit(rater, len(x), float(w[0]), float(w[1]), float(w[2]), tuple(map(float, se)))
    return fits


# ----------------------------------------------------------------------------- pooling a panel
def majority_vote(records: Iterable[PreferenceRecord], rater: str = "majority") -> list[PreferenceRecord]:
    """One record per pair: the side most raters chose (ties and evenly split pairs are left out).

    Pairs are matched as in ``rating_table`` (prompt and the two texts, either order); the record keeps the
    first-seen wording of the prompt and is written with ``rater`` and ``source="majority of N"``.
    """
    votes: dict[Item, dict[str, int]] = {}
    prompts: dict[Item, str] = {}
    for r in records:
        if r.tie:
            continue
        item, _ = item_and_label(r)
        votes.setdefault(item, {})
        votes[item][r.chosen] = votes[item].get(r.chosen, 0) + 1
        prompts.setdefault(item, r.prompt)
    pooled = []
    for item, count in votes.items():
        a, b = pair_texts(item)
        n_a, n_b = count.get(a, 0), count.get(b, 0)
        if n_a != n_b:
            chosen, rejected = (a, b) if n_a > n_b else (b, a)
            pooled.append(PreferenceRecord(prompts[item], chosen, rejected, rater=rater,
                                           source=f"majority of {n_a + n_b}"))
    return pooled


def without_raters(records: Iterable[PreferenceRecord], raters: Iterable[str]) -> list[PreferenceRecord]:
    """The records of everyone but ``raters`` (e.g. the noisiest, or a contrarian)."""
    drop = set(raters)
    return [r for r in records if r.rater not in drop]


# ----------------------------------------------------------------------------- 4. a simulated class
def simulated_class(n: int = 20, seed: int = 0, min_temperature: float = 0.3, max_temperature: float = 3.0,
                    contrarians: int = 1) -> list[world.SimulatedRater]:
    """``n`` simulated students named ``student-01``, ``student-02``, ... with different noise.

    Their temperatures are spread evenly on a log scale from ``min_temperature`` to ``max_temperature``
    and dealt out in an order drawn from ``random.Random(seed)``; ``contrarians`` of them (drawn too)
    prefer the reply gold likes less. Each student has their own seed, so the class is repeatable.
    """
    if n < 1 or not 0 <= contrarians <= n:
        raise ValueError(f"need n >= 1 and 0 <= contrarians <= n, got n={n}, contrarians={contrarians}")
    rng = random.Random(seed)
    temperatures = list(np.geomspace(min_temperature, max_temperature, n)) if n > 1 else [min_temperature]
    rng.shuffle(temperatures)
    contrary = set(rng.sample(range(n), contrarians))
    width = max(2, len(str(n)))
    return [world.SimulatedRater(temperature=float(t), seed=seed * 10_000 + i, name=f"student-{i + 1:0{width}d}",
                                 contrarian=i in contrary)
            for i, t in enumerate(temperatures)]


def class_ratings(raters: Sequence[world.SimulatedRater], pairs: Sequence[tuple[world.Prompt | str, str, str]],
                  per_rater: int | None = None, seed: int = 0) -> list[PreferenceRecord]:
    """Each rater rates ``per_rater`` of the shared ``pairs`` (a random subset each, all of them if None).

    Subsets are drawn with ``random.Random(seed)``, so different raters overlap on many pairs and
    agreement can be computed. Fresh raters and the same seed give the same clicks (the clicks come
    from each rater's own generator, so rating again with the *same* rater objects gives new clicks).
    Records come rater by rater, with ``source="class"``.
    """
    per_rater = len(pairs) if per_rater is None else per_rater
    if not 0 <= per_rater <= len(pairs):
        raise ValueError(f"per_rater must be between 0 and the number of pairs ({len(pairs)}), got {per_rater}")
    rng = random.Random(seed)
    records = []
    for rater in raters:
        for i in sorted(rng.sample(range(len(pairs)), per_rater)):
            prompt, a, b = pairs[i]
            records.append(rater.rate(prompt, a, b, source="class"))
    return records
