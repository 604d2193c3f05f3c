"""Evaluation: win rate, blind hand evaluation (shuffle and unblind), best-of-n, the over-optimisation sweep,
and the per-policy report, checked against hand-computed values and the tiny shipped policy."""
from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from rlhf_lab import evaluation as ev
from rlhf_lab.generation import SampleConfig, sample
from rlhf_lab.models import DEFAULT_POLICY, freeze, load_policy, save_policy
from rlhf_lab.preferences import PreferenceRecord, PreferenceStore, read_preferences
from rlhf_lab.widgets import PairwiseRater, rate_blind
from rlhf_lab.world import load_prompts, split_prompts

PROMPTS = [p.text for p in split_prompts(load_prompts())[1][:8]]


def word_count(prompts, responses) -> torch.Tensor:
    """A cheap stand-in proxy reward that is not the gold reward: the number of words."""
    return torch.tensor([len(r.split()) for r in responses], dtype=torch.float32)


@pytest.fixture(scope="module")
def tiny(one_thread):
    model, tokenizer = load_policy(DEFAULT_POLICY)
    return freeze(model), tokenizer


# ----------------------------------------------------------------------------- win rate
def test_win_rate_by_hand_with_ties():
    # A wins, loses, ties, wins, ties: (1 + 0 + 0.5 + 1 + 0.5) / 5 = 0.6
    assert ev.win_rate(torch.tensor([3.0, 1.0, 2.0, 5.0, -1.0]), torch.tensor([1.0, 2.0, 2.0, 0.0, -1.0])) == \
        pytest.approx(0.6)
    assert ev.win_rate([1.0, 1.0], [1.0, 1.0]) == 0.5
    with pytest.raises(ValueError, match="same length"):
        ev.win_rate([1.0, 2.0], [1.0])


# ----------------------------------------------------------------------------- blind hand evaluation
A_TEXTS = [f"policy A answer number {i}." for i in range(40)]
B_TEXTS = [f"policy B reply number {i}." for i in range(40)]
BLIND_PROMPTS = [f"prompt {i}?" for i in range(40)]


class PrefersA:
    """A simulated rater that always picks policy A's response, wherever it is shown."""
    name = "always-a"

    def rate(self, prompt, a, b, source=None):
        chosen, rejected = (a, b) if a in A_TEXTS else (b, a)
        return PreferenceRecord(prompt, chosen, rejected, rater=self.name, source=source)


def test_blinding_shuffles_with_its_seed_and_hides_the_key():
    blind = ev.blind_pairs(BLIND_PROMPTS, A_TEXTS, B_TEXTS, seed=0, name_a="rloo", name_b="reference")
    first_is_a = [first in A_TEXTS for _, first, _ in blind.pairs]
    assert any(first_is_a) and not all(first_is_a)                      # both orders occur
    assert 10 <= sum(first_is_a) <= 30                                  # a fair coin, not a fixed pattern
    for (prompt, first, second), p, a, b in zip(blind.pairs, BLIND_PROMPTS, A_TEXTS, B_TEXTS):
        assert prompt == p and {first, second} == {a, b}
    again = ev.blind_pairs(BLIND_PROMPTS, A_TEXTS, B_TEXTS, seed=0)
    other = ev.blind_pairs(BLIND_PROMPTS, A_TEXTS, B_TEXTS, seed=1)
    assert again.pairs == blind.pairs and other.pairs != blind.pairs
    assert "True" not in repr(blind) and "_a_first" not in repr(blind)   # the key is not printed
    with pytest.raises(ValueError, match="one response of each policy per prompt"):
        ev.blind_pairs(BLIND_PROMPTS, A_TEXTS[:3], B_TEXTS, seed=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_unblinding_inverts_the_shuffle(tmp_path, seed):
    store = PreferenceStore(tmp_path / "blind.jsonl")
    blind = ev.blind_pairs(BLIND_PROMPTS, A_TEXTS, B_TEXTS, seed=seed, name_a="rloo", name_b="reference")
    records = rate_blind(blind, store, mode="simulated", simulated_rater=PrefersA(), source="test")
    assert len(records) == len(blind) == len(read_preferences(store.path))
    result = ev.unblind(blind, store.records(), rater="always-a")
    assert (result.wins_a, result.wins_b, result.ties, result.unrated) == (40, 0, 0, 0)
    assert result.win_rate == 1.0
    swapped = ev.blind_pairs(BLIND_PROMPTS, B_TEXTS, A_TEXTS, seed=seed)   # now A's texts are "policy B"
    assert ev.unblind(swapped, store.records(), rater="always-a").win_rate == 0.0
    # re-running resumes: nothing is rated twice, nothing is lost
    assert rate_blind(blind, store, mode="simulated", simulated_rater=PrefersA()) == []
    assert len(read_preferences(store.path)) == 40


def test_unblind_by_hand_in_the_widget_ties_split_skips_ignored(tmp_path):
    store = PreferenceStore(tmp_path / "blind.jsonl")
    blind = ev.blind_pairs(BLIND_PROMPTS[:6], A_TEXTS[:6], B_TEXTS[:6], seed=5, name_a="A", name_b="B")
    rater = rate_blind(blind, store, mode="human", rater_name="ana", display=None)
    assert isinstance(rater, PairwiseRater)
    plan = ["a", "a", "b", "tie", "skip", "a"]   # which policy to pick, in the order the pairs come
    for want in plan:
        _, shown_a, _ = rater.current
        side = {"tie": "tie", "skip": "skip"}.get(want) or ("A" if (shown_a in A_TEXTS) == (want == "a") else "B")
        rater.click(side)
    result = ev.unblind(blind, store.records(), rater="ana")
    assert (result.wins_a, result.wins_b, result.ties, result.unrated) == (3, 1, 1, 1)
    assert result.win_rate == pytest.approx((3 + 0.5) / 5)
    assert ev.unblind(blind, store.records(), rater="someone else").rated == 0
    assert math.isnan(ev.unblind(blind, [], rater="ana").win_rate)


# ----------------------------------------------------------------------------- best-of-n
def test_best_of_n_kl_formula_matches_the_exact_kl_of_a_fine_discrete_policy():
    assert ev.best_of_n_kl(1) == 0.0
    assert ev.best_of_n_kl(4) == pytest.approx(math.log(4) - 0.75)
    # Base policy uniform over M responses with distinct proxy scores: best-of-n picks the i-th lowest with
    # probability (i/M)^n - ((i-1)/M)^n. Its exact KL tends to log n - (n-1)/n as M grows.
    M = 20000
    i = torch.arange(1, M + 1, dtype=torch.float64)
    for n in (2, 4, 16):
        p = (i / M) ** n - ((i - 1) / M) ** n
        exact = float((p * torch.log(p * M)).sum())
        assert exact == pytest.approx(ev.best_of_n_kl(n), abs=2e-3)
    with pytest.raises(ValueError, match="n >= 1"):
        ev.best_of_n_kl(0)


def test_best_of_n_expected_equals_the_mean_over_all_subsets():
    g = torch.Generator().manual_seed(0)
    proxy, gold = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    for n in range(1, 7):
        brute = sum(gold[p, max(s, key=lambda j: proxy[p, j])].item()
                    for p in range(3) for s in itertools.combinations(range(6), n)) / (3 * math.comb(6, n))
        assert ev.best_of_n_expected(proxy, gold, n) == pytest.approx(brute, abs=1e-9)
    assert ev.best_of_n_expected(proxy, gold, 1) == pytest.approx(gold.mean().item())
    with pytest.raises(ValueError, match="at least 7 samples"):
        ev.best_of_n_expected(proxy, gold, 7)


def test_sweep_at_n_1_is_a_plain_sample_and_proxy_rises_with_n(tiny):
    model, tokenizer = tiny
    pool = ev.best_of_n_pool(model, tokenizer, PROMPTS, 4, word_count, max_new_tokens=24, seed=3)
    batch = [p for p in PROMPTS for _ in range(4)]
    plain = sample(model, tokenizer, batch, SampleConfig(max_new_tokens=24), torch.Generator().manual_seed(3))
    assert [t for row in pool.texts for t in row] == plain.texts
    chunked = ev.best_of_n_pool(model, tokenizer, PROMPTS, 4, word_count, max_new_tokens=24, seed=3, chunk=12)
    g = torch.Generator().manual_seed(3)
    by_hand = [t for i in range(0, 32, 12)
               for t in sample(model, tokenizer, batch[i:i + 12], SampleConfig(max_new_tokens=24), g).texts]
    assert [t for row in chunked.texts for t in row] == by_hand
    curve = ev.best_of_n_curve(pool)
    assert curve.labels == ["n=1", "n=2", "n=4"] and curve.kl[0] == 0.0
    assert curve.gold[0] == pytest.approx(ev.gold_reward_fn(batch, plain.texts).mean().item(), abs=1e-5)
    assert curve.proxy[0] == pytest.approx(word_count(batch, plain.texts).mean().item(), abs=1e-5)
    assert curve.proxy[0] < curve.proxy[1] < curve.proxy[2]         # the proxy's pick scores higher as n grows
    picks = pool.picks(4)
    assert all(len(p.split()) == max(len(t.split()) for t in row) for p, row in zip(picks, pool.texts))
    assert pool.picks(2, block=1) == [row[2 + int(len(row[3].split()) > len(row[2].split()))] for row in pool.texts]
    with pytest.raises(ValueError, match="4 samples per prompt"):
        pool.picks(8)
    # the table can take its best-of-n responses from the same pool: block j answers sample j of each prompt
    rows = ev.evaluation_table({"best-of-2": ev.BestOfN(model, 2, pool)}, model, tokenizer, PROMPTS, word_count,
                               samples_per_prompt=2, max_new_tokens=24, progress=False)
    assert rows[0].texts == [t for pair in zip(pool.picks(2), pool.picks(2, block=1)) for t in pair]
    with pytest.raises(ValueError, match="needs 6 pool samples"):
        ev.evaluation_table({"bon": ev.BestOfN(model, 2, pool)}, model, tokenizer, PROMPTS, word_count,
                            samples_per_prompt=3, progress=False)


# ----------------------------------------------------------------------------- RL checkpoints
def test_rl_curves_read_the_saved_logs_and_say_what_is_missing(tmp_path):
    log = [{"step": s, "kl": 0.5 * s, "proxy_reward": 0.1 * s, "gold_reward": 1.0 - 0.01 * s, "loss": 0.0}
           for s in range(5)]
    (tmp_path / "rloo").mkdir()
    (tmp_path / "rloo" / "train_log.json").write_text(json.dumps(log))
    (tmp_path / "ppo").mkdir()
    (tmp_path / "ppo" / "train_log.json").write_text(json.dumps({"loss": [0.7, 0.6]}))   # DPO-shaped: no KL per step
    curves, skipped = ev.rl_curves(["rloo", "ppo", "grpo"], folder=tmp_path)
    (curve,) = curves
    assert curve.name == "RLOO" and curve.kind == "rl" and curve.kl == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert curve.gold == [r["gold_reward"] for r in log] and curve.labels[2] == "step 2"
    assert "ppo" in skipped and "train_log.json" in skipped["ppo"]
    assert "notebook 06" in skipped["grpo"] and "no policy at" in skipped["grpo"]
    (tmp_path / "reinforce").mkdir()
    assert "kept no per-step log" in ev.rl_curves(["reinforce"], folder=tmp_path)[1]["reinforce"]
    with pytest.raises(ValueError, match="row 1 has no gold_reward"):
        ev.rl_curve([log[0], {"kl": 1.0, "proxy_reward": 0.0}], "x")
    (tmp_path / "rloo" / "train_log.json").write_text("[{")
    with pytest.raises(ValueError, match=r"train_log.json:1: not valid JSON"):
        ev.rl_curves(["rloo"], folder=tmp_path)


# ----------------------------------------------------------------------------- the report
def test_report_of_a_policy_against_itself(tiny, tmp_path):
    model, tokenizer = tiny
    prompts = PROMPTS * 2
    rows = ev.evaluation_table({"reference": model, "best-of-1": ev.BestOfN(model, 1),
                                "best-of-4 (gold)": ev.BestOfN(model, 4)}, model, tokenizer, prompts,
                               ev.gold_reward_fn, samples_per_prompt=4, max_new_tokens=24, seed=0, progress=False)
    ref, bo1, bo4 = rows
    assert ref.n == len(prompts) * 4 == len(ref.texts)
    assert abs(ref.kl) < 1e-3                      # the policy against itself: KL 0 up to float error
    assert abs(ref.win_rate - 0.5) < 0.15          # against its own independent samples: a coin flip
    assert ref.proxy_reward == pytest.approx(ref.gold_reward)   # proxy = gold here
    assert 0 < ref.distinct_2 <= 1
    assert bo1.texts == ref.texts and bo1.kl == 0.0 and bo1.win_rate == ref.win_rate   # best-of-1 is a plain sample
    assert bo4.kl == pytest.approx(math.log(4) - 0.75)
    assert bo4.gold_reward > ref.gold_reward + 0.3 and bo4.win_rate > ref.win_rate + 0.1
    path = ev.save_table(rows, tmp_path / "evaluation" / "table.json")
    saved = json.loads(path.read_text())
    assert [r["policy"] for r in saved] == ["reference", "best-of-1", "best-of-4 (gold)"]
    assert set(saved[0]) == {"policy", "gold_reward", "proxy_reward", "kl", "win_rate", "distinct_2", "n", "length"}
    assert 1 < ref.length < 24 and bo1.length == ref.length     # mean tokens per response, below the cap
    assert "best-of-4 (gold)" in ev.format_table(rows)
    with pytest.raises(ValueError, match="its own base"):
        ev.evaluation_table({"bon": ev.BestOfN(load_policy(DEFAULT_POLICY)[0], 2)}, model, tokenizer, prompts,
                            ev.gold_reward_fn, progress=False)


def test_load_trained_policies_lists_the_missing_with_their_notebook(tiny, tmp_path):
    model, tokenizer = tiny
    save_policy(model, tokenizer, tmp_path / "rloo")
    found, missing = ev.load_trained_policies(folder=tmp_path)
    assert list(found) == ["rloo"] and not found["rloo"].training
    assert missing == {"reinforce": "notebook 05", "grpo": "notebook 06", "ppo": "notebook 06", "dpo": "notebook 07"}
