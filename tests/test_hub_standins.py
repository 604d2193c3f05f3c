"""The hub path on tiny random stand-ins (tests/standins.py): a Llama with a chat template for SmolLM2-Instruct,
a GPT-2 with its own tokenizer for gpt2. Load, sample, reward model, one RLOO step, one DPO step and the TRL
export go through the same functions as the notebooks; notebook 09 itself runs on both."""
from __future__ import annotations

import math

import nbformat
import pytest
import torch

from rlhf_lab import course, dpo, models, world
from rlhf_lab import policy_gradient as pg
from rlhf_lab import reward_model as rm
from rlhf_lab.generation import SampleConfig, encode, sample
from rlhf_lab.preferences import to_trl
from standins import build_gpt2_own_tokenizer, build_llama_chat

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPTS = ["Is it hard to learn Python?", "Should I adopt a dog this year?"]


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("standins")
    return {"llama": build_llama_chat(folder / "llama"), "gpt2": build_gpt2_own_tokenizer(folder / "gpt2")}


def test_the_chat_model_reads_its_template_and_ends_at_its_end_of_turn(standins):
    policy, tokenizer = models.load_policy(standins["llama"])
    end = models.end_of_reply_id(tokenizer)
    assert type(policy).__name__ == "LlamaForCausalLM" and models.has_chat_template(tokenizer)
    assert tokenizer.convert_ids_to_tokens(end) == "<|im_end|>" and end != tokenizer.eos_token_id
    assert models.format_prompt("Hi?", tokenizer) == "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    batch = encode(tokenizer, PROMPTS, ["Start small.", "Yes."])
    first = batch.prompt_ids[batch.prompt_mask.bool()].tolist()[0]
    assert tokenizer.convert_ids_to_tokens(first) == "<|im_start|>"            # no BOS before the template
    last = [row[mask.bool()].tolist()[-1] for row, mask in zip(batch.response_ids, batch.response_mask)]
    assert last == [end, end]
    assert models.preset(standins["llama"]).name == "hub"
    samples = sample(policy, tokenizer, PROMPTS * 4, SampleConfig(max_new_tokens=16), torch.Generator().manual_seed(0))
    for ids, mask, ended in zip(samples.response_ids, samples.response_mask, samples.ended):
        real = ids[mask.bool()].tolist()
        assert (real[-1] == end) == bool(ended)                                 # a reply ends at <|im_end|> only
        assert tokenizer.eos_token_id not in real[:-1] or end not in real[:-1]


def test_the_base_model_uses_the_course_frame_and_stops_at_an_invented_user_turn(standins, monkeypatch):
    from rlhf_lab import generation

    policy, tokenizer = models.load_policy(standins["gpt2"])
    assert not models.has_chat_template(tokenizer) and models.end_of_reply_id(tokenizer) == tokenizer.eos_token_id
    assert models.format_prompt("Hi?", tokenizer) == "User: Hi?\nAssistant:"
    script = tokenizer(" Start small." + models.USER_TURN + " And then", add_special_tokens=False)["input_ids"]
    steps = iter(range(100))

    def scripted(logits, config, generator):   # the model "writes" a reply, then invents the user's turn
        t = next(steps)
        return torch.full((logits.shape[0],), script[min(t, len(script) - 1)], dtype=torch.long)

    monkeypatch.setattr(generation, "_draw", scripted)
    out = sample(policy, tokenizer, PROMPTS[:1], SampleConfig(max_new_tokens=30))
    assert out.texts == ["Start small."] and out.ended.tolist() == [True]
    n_turn = len(tokenizer(models.USER_TURN, add_special_tokens=False)["input_ids"])
    assert int(out.response_mask.sum()) == len(script) - len(tokenizer(" And then", add_special_tokens=False)["input_ids"])
    assert n_turn >= 2


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_reward_model_rloo_and_dpo_run_on_the_standin(standins, name):
    folder = standins[name]
    policy, tokenizer = models.load_policy(folder)
    train, _ = world.split_prompts(world.load_prompts())
    records = world.simulate_preferences(16, seed=0, prompts=train)
    # a reward model on the stand-in's backbone, as notebooks 03 and 09 build one
    net, rtok = rm.load_reward_model(folder)
    history = rm.train_reward_model(net, rtok, records, progress=False,
                                    config=rm.RewardTrainConfig(batch_size=8, lr=1e-3, micro_batch_size=4))
    assert len(history.loss) == 2 and all(math.isfinite(x) for x in history.loss)
    scores = rm.score(net, rtok, PROMPTS, ["Start small.", "Yes."])
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    # one RLOO step, rewarded by it, micro-batched
    before = [p.detach().clone() for p in policy.parameters()]
    ref = models.frozen_copy(policy)
    log = pg.train(policy, ref, tokenizer, lambda p, r: rm.score(net, rtok, p, r), [p.text for p in train],
                   pg.PGConfig(steps=1, prompts_per_step=2, samples_per_prompt=4, max_new_tokens=12, lr=1e-3,
                               micro_batch_size=4, missing_eos_penalty=None), progress=False)   # random models never end
    assert abs(log[0]["kl"]) < 1e-4 and math.isfinite(log[0]["loss"])
    assert any((p - q).abs().max() > 0 for p, q in zip(policy.parameters(), before))
    # one DPO step from the same pairs: the first loss is log 2 (policy = reference)
    fresh, _ = models.load_policy(folder)
    dpo_log = dpo.train_dpo(fresh, models.frozen_copy(fresh), tokenizer, records,
                            dpo.DPOConfig(batch_size=8, max_steps=1, micro_batch_size=3), progress=False)
    assert dpo_log.loss[0] == pytest.approx(math.log(2), abs=1e-5)
    # the TRL export: conversational rows for the chat model, the course frame otherwise
    row = to_trl(records[:1], framed=True, tokenizer=tokenizer, metadata=False)[0]
    if name == "llama":
        assert row["prompt"] == [{"role": "user", "content": records[0].prompt}]
        assert row["chosen"] == [{"role": "assistant", "content": records[0].chosen}]
    else:
        assert row["prompt"] == models.format_prompt(records[0].prompt) and row["chosen"].startswith(" ")


def test_frozen_bottom_layers_train_under_checkpointing_and_micro_batches(standins):
    """The Llama stand-in (2 blocks), checkpointed: with its embeddings and lower block frozen, the checkpointed upper
    block still gets gradients (``enable_input_require_grads``; without it transformers 4.x's re-entrant checkpointing
    leaves the block without any) and moves; the frozen part does not."""
    policy, tokenizer = models.load_policy(standins["llama"])
    models.enable_checkpointing(policy)
    train, _ = world.split_prompts(world.load_prompts())
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    pg.train(policy, models.frozen_copy(policy), tokenizer, lambda p, r: torch.randn(len(r), generator=torch.Generator().manual_seed(0)),
             [p.text for p in train], pg.PGConfig(steps=1, prompts_per_step=2, samples_per_prompt=4, max_new_tokens=12,
                                                 lr=1e-3, micro_batch_size=4, missing_eos_penalty=None,
                                                 num_layers_unfrozen=1), progress=False)
    moved = {n for n, p in policy.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("model.layers.1.") for n in moved), moved
    assert not any(n.startswith(("model.layers.0.", "model.embed_tokens")) for n in moved), moved


@pytest.mark.notebook
@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_notebook_09_runs_on_the_standin(standins, name, tmp_path):
    path = next(p for p in course.course_notebooks() if p.name.startswith("09"))
    params = {"policy_name": str(standins[name]), "micro_batch_size": 8, "checkpointing": name == "llama"}
    result = course.run_notebook(path, tmp_path, params)
    assert result.ok, result.error
    executed = nbformat.read(tmp_path / path.name, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert ("chat template: yes" in text) == (name == "llama")
    assert ("<|im_start|>" in text) == (name == "llama")
    assert "DPOTrainer:" in text or "TRL is not installed" in text
