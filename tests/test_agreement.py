"""Agreement statistics (against scikit-learn and the krippendorff package), rater-noise fits, the simulated class."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from rlhf_lab import agreement, world
from rlhf_lab.agreement import (RatingTable, class_ratings, cohen_kappa, fit_rater_temperature, fit_slope,
                                kappa_matrix, krippendorff_alpha, pair_texts, pairwise_kappa, rating_table,
                                raw_agreement, simulated_class)
from rlhf_lab.preferences import PreferenceRecord, ScoreRecord

sklearn_metrics = pytest.importorskip("sklearn.metrics")
krippendorff = pytest.importorskip("krippendorff")

P = "What do you think about my plan to start a vegetable garden?"


@pytest.fixture(scope="module")
def pairs():
    return world.make_pairs(world.load_prompts(), 300, seed=1)


def random_labels(rng: random.Random, n: int, categories, missing: float) -> list:
    return [None if rng.random() < missing else rng.choice(categories) for _ in range(n)]


# ----------------------------------------------------------------------------- aligning raters
def test_rating_table_aligns_pairs_and_the_latest_record_wins():
    a, b, c = "Reply one.", "Reply two.", "Reply three."
    records = [PreferenceRecord(P, a, b, rater="ana"),
               PreferenceRecord(P, b, a, rater="bo"),              # same pair, shown the other way round
               PreferenceRecord(P, a, c, rater="bo"),
               PreferenceRecord(P, a, c, rater="bo", tie=True),    # bo changed his mind: the tie wins
               PreferenceRecord(P, b, a, rater="ana")]             # ana too: b wins now
    table = rating_table(records)
    assert table.raters == ["ana", "bo"]
    assert table.items == [(P, frozenset((a, b))), (P, frozenset((a, c)))]
    assert pair_texts(table.items[0]) == (a, b)                    # "A" = the alphabetically first text
    assert table.column("ana") == ["B", None]
    assert table.column("bo") == ["B", "tie"]


def test_rating_table_reads_scores_and_rejects_a_mix():
    records = [ScoreRecord(P, "x.", 4, rater="ana"), ScoreRecord(P, "y.", 2, rater="ana"),
               ScoreRecord(P, "x.", 5, rater="bo"), ScoreRecord(P, "x.", 3, rater="ana")]
    table = rating_table(records)
    assert table.items == [(P, "x."), (P, "y.")]
    assert table.labels == [[3, 5], [2, None]]
    with pytest.raises(ValueError, match="both"):
        rating_table(records + [PreferenceRecord(P, "x.", "y.")])


# ----------------------------------------------------------------------------- kappa
def test_hand_computed_kappa_and_raw_agreement():
    a, b = ["A", "A", "B", "B", None], ["A", "B", "B", "B", "A"]
    # p_o = 3/4; p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2; kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2 (item 5: ana missing)
    assert raw_agreement(a, b) == pytest.approx(0.75)
    assert cohen_kappa(a, b) == pytest.approx(0.5)
    assert cohen_kappa(a, a) == 1.0
    assert cohen_kappa(["A", "B"], ["B", "A"]) == pytest.approx(-1.0)
    assert math.isnan(cohen_kappa(["A", "A"], ["A", "A"]))          # one label only: undefined
    with pytest.raises(ValueError, match="share no item"):
        cohen_kappa(["A", None], [None, "B"])
    with pytest.raises(ValueError, match="aligned"):
        cohen_kappa(["A"], ["A", "B"])


@pytest.mark.parametrize("seed", range(6))
def test_kappa_matches_sklearn_with_ties_and_missing_labels(seed):
    rng = random.Random(seed)
    categories = ["A", "B", "tie"] if seed % 2 == 0 else [1, 2, 3, 4, 5]
    a, b = random_labels(rng, 60, categories, 0.25), random_labels(rng, 60, categories, 0.25)
    if seed >= 4:                      # correlated raters too, not only chance-level ones
        b = [x if x is None or rng.random() < 0.7 else y for x, y in zip(a, b)]
    both = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    ref = sklearn_metrics.cohen_kappa_score([x for x, _ in both], [y for _, y in both])
    assert cohen_kappa(a, b) == pytest.approx(ref, abs=1e-12)
    assert raw_agreement(a, b) == pytest.approx(np.mean([x == y for x, y in both]))


def test_pairwise_kappa_and_matrix():
    table = RatingTable(items=list(range(4)), raters=["r1", "r2", "r3"],
                        labels=[["A", "A", "B"], ["A", "B", "A"], ["B", "B", "A"], ["B", "B", None]])
    kappas = pairwise_kappa(table)
    assert set(kappas) == {("r1", "r2"), ("r1", "r3"), ("r2", "r3")}
    assert kappas[("r1", "r2")] == pytest.approx(0.5)
    assert kappas[("r1", "r3")] == pytest.approx(cohen_kappa(table.column("r1"), table.column("r3")))
    assert math.isnan(pairwise_kappa(table, min_shared=4)[("r1", "r3")])   # they share 3 items
    raters, k = kappa_matrix(table)
    assert raters == ["r1", "r2", "r3"] and np.allclose(k, k.T) and np.all(np.diag(k) == 1)
    assert k[0, 1] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- alpha
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units.
PAPER_DATA = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
              [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
              [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
              [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
PAPER_ALPHA = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849}


@pytest.mark.parametrize("level", agreement.LEVELS)
def test_alpha_reproduces_krippendorffs_worked_example(level):
    items_by_raters = [list(row) for row in zip(*PAPER_DATA)]      # the paper lists observers x units
    assert round(krippendorff_alpha(items_by_raters, level), 3) == PAPER_ALPHA[level]


def test_alpha_hand_computed_and_edge_cases():
    # 2 raters, 4 items: (A,A) (A,B) (B,B) (B,B). o_AA = 2, o_AB = o_BA = 1, o_BB = 4; n_A = 3, n_B = 5, n = 8.
    # alpha = 1 - (n - 1) * (o_AB + o_BA) / (2 n_A n_B) = 1 - 7 * 2 / 30
    rows = [["A", "A"], ["A", "B"], ["B", "B"], ["B", "B"], ["A", None]]   # the last item is not pairable
    assert krippendorff_alpha(rows) == pytest.approx(1 - 14 / 30)
    assert krippendorff_alpha([[1, 1, None], [2, 2, 2], [5, None, 5]], "interval") == 1.0
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]]))            # no variation: undefined
    with pytest.raises(ValueError, match="two or more raters"):
        krippendorff_alpha([[1, None], [None, 2]])
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(rows, "ratio")
    with pytest.raises(TypeError, match="numeric"):
        krippendorff_alpha(rows, "ordinal")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("level", agreement.LEVELS)
def test_alpha_matches_the_krippendorff_package(seed, level):
    rng = random.Random(seed)
    n_items, n_raters = 40, 3 + seed
    truth = [rng.randint(1, 5) for _ in range(n_items)]
    rows = [[None if rng.random() < 0.35 else t if rng.random() < 0.6 else rng.randint(1, 5)
             for _ in range(n_raters)] for t in truth]
    reliability_data = np.array([[np.nan if x is None else x for x in row] for row in rows], dtype=float).T
    ref = krippendorff.alpha(reliability_data=reliability_data, level_of_measurement=level)
    assert krippendorff_alpha(rows, level) == pytest.approx(ref, abs=1e-10)
    assert 0.1 < ref < 0.9                                        # a real test: neither chance nor perfect


def test_alpha_on_a_rating_table_of_scores():
    rng = random.Random(0)
    raters = [world.SimulatedRater(temperature=0.5, seed=i, name=f"r{i}") for i in range(4)]
    replies = world.candidate_responses(world.load_prompts()[0], 30, rng)
    records = [ScoreRecord(P, reply, r.score(P, reply), rater=r.name) for r in raters for reply in replies
               if rng.random() < 0.8]
    table = rating_table(records)
    reliability_data = np.array([[np.nan if x is None else x for x in row] for row in table.labels], dtype=float).T
    for level in agreement.LEVELS:
        assert krippendorff_alpha(table, level) == pytest.approx(
            krippendorff.alpha(reliability_data=reliability_data, level_of_measurement=level), abs=1e-10)


# ----------------------------------------------------------------------------- rater temperature
def test_fit_slope_matches_sklearn_logistic_regression():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, 400)
    picked_first = rng.random(400) < 1 / (1 + np.exp(-0.8 * x))   # a click per pair with gold gap x
    diffs = np.where(picked_first, x, -x)                          # gold(chosen) - gold(rejected)
    k, se = fit_slope(diffs)
    ref = linear_model.LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-12, max_iter=1000)
    ref.fit(x[:, None], picked_first.astype(int))
    assert k == pytest.approx(ref.coef_[0, 0], rel=1e-5)
    assert 0 < se < 0.2 and abs(k - 0.8) < 3 * se


def test_fit_recovers_simulated_temperatures_and_flags_the_contrarian(pairs):
    raters = [world.SimulatedRater(temperature=t, seed=i, name=f"r{i}", contrarian=c)
              for i, (t, c) in enumerate([(0.3, False), (1.0, False), (3.0, False), (1.0, True)])]
    records = class_ratings(raters, pairs)                        # 300 clicks each
    fits = fit_rater_temperature(records)
    for r in raters:
        fit = fits[r.name]
        truth = -r.temperature if r.contrarian else r.temperature
        assert fit.n_clicks == 300 and fit.n_ties == 0
        assert fit.contrarian == r.contrarian
        assert fit.temperature == pytest.approx(truth, rel=0.35)  # 300 clicks: about 15 % spread
        assert abs(fit.slope - 1 / truth) < 3 * fit.slope_se


def test_fit_edge_cases_report_values_without_crashing(pairs):
    perfect = world.SimulatedRater(temperature=0, name="careful")
    spiteful = world.SimulatedRater(temperature=0, name="spiteful", contrarian=True)
    records = class_ratings([perfect, spiteful], pairs[:50])
    records += [PreferenceRecord(P, "a.", "b.", rater="undecided", tie=True)]
    records += [PreferenceRecord(P, "Hi.", "Hi!", rater="same")]      # gold scores both alike: no information
    fits = fit_rater_temperature(records, gold_fn=lambda p, t: 0.0 if t in ("Hi.", "Hi!") else world.gold_reward(p, t))
    assert fits["careful"].slope == math.inf and fits["careful"].temperature == 0.0
    assert not fits["careful"].contrarian and math.isnan(fits["careful"].slope_se)
    assert fits["spiteful"].slope == -math.inf and fits["spiteful"].contrarian
    assert fits["undecided"].n_clicks == 0 and fits["undecided"].n_ties == 1
    assert math.isnan(fits["undecided"].temperature) and math.isnan(fits["same"].temperature)


# ----------------------------------------------------------------------------- the simulated class
def test_simulated_class_is_spread_out_and_deterministic(pairs):
    students = simulated_class(20, seed=0)
    assert [s.name for s in students] == [f"student-{i:02d}" for i in range(1, 21)]
    temps = sorted(s.temperature for s in students)
    assert temps[0] == pytest.approx(0.3) and temps[-1] == pytest.approx(3.0) and len(set(temps)) == 20
    assert sum(s.contrarian for s in students) == 1

    def clicks(seed):
        return [(r.prompt, r.chosen, r.rejected, r.rater, r.source)
                for r in class_ratings(simulated_class(20, seed=seed), pairs[:40], per_rater=25, seed=seed)]
    assert clicks(0) == clicks(0)
    assert clicks(0) != clicks(1)
    assert len(clicks(0)) == 20 * 25
    with pytest.raises(ValueError, match="per_rater"):
        class_ratings(students, pairs[:10], per_rater=11)


def test_the_class_overlaps_and_the_contrarian_stands_out(pairs):
    students = simulated_class(20, seed=0)
    records = class_ratings(students, pairs[:40], per_rater=25, seed=0)
    raters, k = kappa_matrix(records)
    assert not np.isnan(k).any()                                  # 25 + 25 > 40: every pair of students overlaps
    mean_kappa = (k.sum(axis=1) - 1) / (len(raters) - 1)
    contrarian = next(s.name for s in students if s.contrarian)
    assert raters[int(np.argmin(mean_kappa))] == contrarian and mean_kappa.min() < 0
    assert 0.1 < krippendorff_alpha(rating_table(records)) < 0.6
    fits = fit_rater_temperature(records)
    assert [f.rater for f in fits.values() if f.contrarian] == [contrarian]
