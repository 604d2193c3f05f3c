"""Facts notebook 09 states about TRL hold for the installed TRL: every config field its map uses exists, and
every trainer it names is importable, except PPO's, which the notebook says TRL removed."""
from __future__ import annotations

import ast
import dataclasses
import json
import re

import pytest

from rlhf_lab import course

trl = pytest.importorskip("trl", reason="TRL is the optional test extra: pip install trl")


def _notebook_09() -> list[str]:
    path = next(p for p in course.course_notebooks() if p.name.startswith("09"))
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]]


def test_every_trl_config_field_in_the_map_exists():
    cell = next(s for s in _notebook_09() if "used = {" in s)
    used = ast.literal_eval(re.search(r"used = (\{.*?\})\n", cell, flags=re.S).group(1))
    assert set(used) == {"RewardConfig", "RLOOConfig", "GRPOConfig", "DPOConfig"}
    for name, fields in used.items():
        known = {f.name for f in dataclasses.fields(getattr(trl, name))}
        assert not set(fields) - known, f"{name} has no {sorted(set(fields) - known)} in TRL {trl.__version__}"


def test_every_trainer_the_notebook_names_is_importable_and_ppo_is_said_to_be_gone():
    text = "\n".join(_notebook_09())
    named = set(re.findall(r"\b([A-Z][A-Za-z]+Trainer)\b", text))
    assert {"RewardTrainer", "RLOOTrainer", "GRPOTrainer", "DPOTrainer"} <= named
    for name in named - {"PPOTrainer"}:
        assert hasattr(trl, name), f"notebook 09 names trl.{name}, which TRL {trl.__version__} does not have"
    assert not hasattr(trl, "PPOTrainer") and "OpenRLHF" in text and "verl" in text
