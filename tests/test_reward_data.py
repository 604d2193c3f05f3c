"""The simulated reward-model data (``reward_data.py``): minimal pairs differ in one defect, k-way comparisons
share their responses and are reproducible."""
from __future__ import annotations

import pytest

from rlhf_lab import reward_data, world


@pytest.fixture(scope="module")
def split():
    return world.split_prompts(world.load_prompts())


def test_minimal_pairs_differ_in_one_defect(split):
    records = reward_data.simulate_minimal_pairs(split[0], {"said twice": 5, "another topic's answer": 5}, temperature=0.0, seed=0)
    assert len(records) == 10
    for r in records:      # a rater without noise prefers the reply without the defect
        assert world.gold_reward(r.prompt, r.chosen) > world.gold_reward(r.prompt, r.rejected)
        assert r.source.startswith("minimal pair: ")
    with pytest.raises(ValueError, match="unknown defects"):
        reward_data.simulate_minimal_pairs(split[0], {"nonsense": 1})


def test_comparisons_share_responses_and_train_in_groups(split):
    records = reward_data.simulate_comparisons(split[0], n_prompts=3, k=4, temperature=1.0, seed=0)
    assert len(records) == 3 * 6                                   # k(k-1)/2 pairs per prompt
    for group in (records[:6], records[6:12], records[12:]):
        assert len({r.prompt for r in group}) == 1
        assert len({t for r in group for t in (r.chosen, r.rejected)}) == 4
    again = reward_data.simulate_comparisons(split[0], n_prompts=3, k=4, temperature=1.0, seed=0)
    assert [(r.prompt, r.chosen, r.rejected) for r in again] == [(r.prompt, r.chosen, r.rejected) for r in records]
