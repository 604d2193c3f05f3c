"""The pairwise trainer's scaffolding (``pairwise.py``): records indexed by row and grouped by prompt or by
shared response, batches that keep groups whole, the warm-up-then-decay schedule, and the share ranked right.
(The trainer itself runs in test_reward_model.py, test_dpo.py and test_accumulation.py.)"""
from __future__ import annotations

import pytest
import torch

from rlhf_lab.pairwise import group_batches, index_records, share_right, warmup_then_decay
from rlhf_lab.preferences import PreferenceRecord


def test_records_are_indexed_by_distinct_text_and_grouped_by_prompt_or_shared_response():
    a, b, c, d = "Try it. Good luck!", "Whatever.", "Hmm.", "Ok."
    records = [PreferenceRecord("p", a, b), PreferenceRecord("q", a, b, tie=True),
               PreferenceRecord("p", c, d), PreferenceRecord("p", b, c)]
    texts, pairs = index_records(records, group_by="prompt")
    assert texts == [("p", a), ("q", a), ("p", c), ("p", b), ("q", b), ("p", d)]   # chosen first, then rejected
    assert pairs.chosen.tolist() == [0, 1, 2, 3] and pairs.rejected.tolist() == [3, 4, 5, 2]
    assert pairs.targets.tolist() == [1.0, 0.5, 1.0, 1.0]
    assert pairs.groups == [[0, 2, 3], [1]]
    # by shared response: (p, a)-(p, b) and (p, c)-(p, d) are linked only through the last record
    assert index_records(records[:3], group_by="response")[1].groups == [[0], [1], [2]]
    assert index_records(records, group_by="response")[1].groups == [[0, 2, 3], [1]]
    with pytest.raises(ValueError, match="group_by"):
        index_records(records, group_by="rater")


def test_batches_keep_groups_whole_and_cover_every_record_once():
    groups = [[0, 1, 2], [3], [4, 5], [6, 7, 8, 9]]
    batches = group_batches(groups, batch_size=3, generator=torch.Generator().manual_seed(0))
    assert sorted(i for batch in batches for i in batch.tolist()) == list(range(10))
    for batch in batches:
        assert all(set(g) <= set(batch.tolist()) or not set(g) & set(batch.tolist()) for g in groups)
    assert all(len(batch) >= 3 for batch in batches[:-1])


def test_warmup_then_decay_and_share_right():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_then_decay(optimizer, total=10, warmup_fraction=0.2)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])
    assert share_right(torch.tensor([1.0, -2.0, 0.0, 3.0])) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
