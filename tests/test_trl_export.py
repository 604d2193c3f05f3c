"""The TRL export path: the course's preference file trains TRL's DPOTrainer with no conversion code.

Simulated preferences are written with ``preferences.write_trl_jsonl`` (metadata columns included, as a
learner's file would be), read back with ``datasets.load_dataset("json", ...)`` exactly as notebook 09 does,
and TRL's ``DPOTrainer`` trains the shipped tiny policy for three steps offline. TRL is the optional test
extra: the tests skip when it is not installed.
"""
from __future__ import annotations

import math

import pytest
import torch

from rlhf_lab import world
from rlhf_lab.models import DEFAULT_POLICY, frozen_copy, load_policy
from rlhf_lab.preferences import PreferenceRecord, read_preferences, write_trl_jsonl

STEPS = 3         # DPOTrainer optimizer steps
BATCH = 8         # pairs per step: the whole exported file, so every step sees the same pairs


@pytest.fixture(scope="module")
def trl_run(tmp_path_factory, one_thread):
    """Export simulated pairs (plus one tie, which the export leaves out), train DPOTrainer on the file."""
    trl = pytest.importorskip("trl", reason="TRL is the optional test extra: pip install trl")
    datasets = pytest.importorskip("datasets")
    from trl import DPOConfig, DPOTrainer

    if not (DEFAULT_POLICY / "config.json").exists():
        pytest.skip(f"no tiny policy at {DEFAULT_POLICY}: build it with python -m rlhf_lab.pretrain")
    tmp = tmp_path_factory.mktemp("trl")
    records = world.simulate_preferences(BATCH, temperature=1.0, seed=0)
    tie = PreferenceRecord(records[0].prompt, records[0].chosen, records[0].rejected, tie=True)
    path = write_trl_jsonl(tmp / "preferences_trl.jsonl", records + [tie])

    dataset = datasets.load_dataset("json", data_files=str(path), split="train")
    policy, tokenizer = load_policy(DEFAULT_POLICY)
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    # transformers 5 renamed gradient checkpointing to activation checkpointing (the old name warns)
    checkpointing = "activation_checkpointing" if hasattr(DPOConfig, "activation_checkpointing") else "gradient_checkpointing"
    args = DPOConfig(output_dir=str(tmp / "dpo"), beta=0.1, learning_rate=1e-3, max_steps=STEPS,
                     per_device_train_batch_size=BATCH, gradient_accumulation_steps=1, logging_steps=1,
                     lr_scheduler_type="constant", report_to="none", save_strategy="no",
                     bf16=False, use_cpu=True, seed=0, max_length=128, **{checkpointing: False})
    trainer = DPOTrainer(model=policy, ref_model=frozen_copy(policy), args=args, train_dataset=dataset,
                         processing_class=tokenizer)
    trainer.train()
    return {"records": records, "path": path, "dataset": dataset, "policy": policy, "before": before,
            "log": [row for row in trainer.state.log_history if "loss" in row], "trl": trl}


def test_export_loads_as_a_trl_dataset(trl_run):
    dataset, records = trl_run["dataset"], trl_run["records"]
    assert len(dataset) == len(records)                  # the tie was left out by the export
    assert {"prompt", "chosen", "rejected"} <= set(dataset.column_names)
    assert dataset[5]["chosen"] == records[5].chosen and dataset[5]["prompt"] == records[5].prompt
    assert read_preferences(trl_run["path"]) == records  # the same file is still a course preference file


def test_dpo_trainer_runs_on_the_exported_file(trl_run):
    log = trl_run["log"]
    assert [row["step"] for row in log] == list(range(1, STEPS + 1))
    losses = [row["loss"] for row in log]
    assert all(math.isfinite(x) for x in losses), losses
    # step 1 is scored before any update: the policy IS the reference, every implicit reward is 0
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3)
    # the same 8 pairs every step: their loss must fall well below log 2 and the chosen side pull ahead
    assert losses[-1] < 0.5 * math.log(2)
    assert log[-1]["rewards/margins"] > 0 and log[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)


def test_dpo_trainer_changed_the_policy(trl_run):
    policy, before = trl_run["policy"], trl_run["before"]
    moved = [name for name, p in policy.named_parameters() if not torch.equal(p.detach().cpu(), before[name])]
    assert len(moved) > len(before) // 2, f"only {len(moved)} of {len(before)} tensors changed"
    assert all(torch.isfinite(p).all() for p in policy.parameters())
