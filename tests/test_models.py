"""Tests for rlhf_lab.models (tokenizer, chat format, build/save/load) and rlhf_lab.pretrain.

Everything but ``test_shipped_checkpoint_loads_offline_and_generates`` uses a tiny config
and a small slice of the world's corpus, so the file runs in seconds.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

from rlhf_lab import models, world
from rlhf_lab.generation import SampleConfig, sample
from rlhf_lab.models import (DEFAULT_POLICY, TinyGPTConfig, build_model, build_tokenizer, format_prompt,
                             format_response, load_policy, load_reference, num_parameters, save_policy,
                             tokenize_prompts, tokenize_responses)
from rlhf_lab.paths import REPO_ROOT
from rlhf_lab.pretrain import (PretrainConfig, corpus_texts, eval_loss, get_batch, lr_at, pack, pretrain)

TINY = TinyGPTConfig(vocab_size=400, n_positions=64, n_embd=32, n_layer=2, n_head=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    """A small slice of the real corpus: 24 prompts x 6 responses."""
    prompts = world.load_prompts()[::13]
    return [(p.text, r) for p, r in world.response_corpus(prompts, per_prompt=6, seed=0)]


@pytest.fixture(scope="module")
def tokenizer(pairs):
    return build_tokenizer(corpus_texts(pairs), TINY.vocab_size)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------- format and tokenizer
def test_chat_format():
    assert format_prompt("  Is it hard to learn Python? ") == "User: Is it hard to learn Python?\nAssistant:"
    assert format_response("Try it. ") == " Try it."


def test_tokenizer_special_tokens_and_split_equals_joint(tokenizer, pairs):
    assert len(tokenizer) == TINY.vocab_size
    ids = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    assert len(ids) == 3 and tokenizer.padding_side == "left"
    prompt, response = pairs[1]
    p_ids, = tokenize_prompts(tokenizer, [prompt])
    r_ids, = tokenize_responses(tokenizer, [response])
    assert p_ids[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in r_ids
    assert r_ids[-1] == tokenizer.eos_token_id and r_ids.count(tokenizer.eos_token_id) == 1
    # Tokenizing prompt and response apart gives the same tokens as tokenizing the whole text.
    joint = tokenizer(format_prompt(prompt) + format_response(response))["input_ids"]
    assert p_ids + r_ids[:-1] == joint
    assert tokenizer.decode(r_ids, skip_special_tokens=True).strip() == response
    # byte-level: text the corpus never saw still round-trips
    assert tokenizer.decode(tokenizer("Zoë naïve 🙂")["input_ids"], skip_special_tokens=True) == "Zoë naïve 🙂"


def test_build_model_matches_tokenizer(tokenizer):
    torch.manual_seed(0)
    model = build_model(TINY, tokenizer)
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied
    expected = (len(tokenizer) + TINY.n_positions) * TINY.n_embd + TINY.n_layer * (12 * TINY.n_embd**2 + 13 * TINY.n_embd) + 2 * TINY.n_embd
    assert num_parameters(model) == expected


# ---------------------------------------------------------------------------- save / load
def test_save_and_load_round_trip(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = build_model(TINY, tokenizer)
    save_policy(model, tokenizer, tmp_path / "policy")
    assert (tmp_path / "policy" / "model.safetensors").exists()
    assert not list((tmp_path / "policy").glob("*.bin")) and not list((tmp_path / "policy").glob("*.pt"))
    saved = json.loads((tmp_path / "policy" / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "PreTrainedTokenizerFast"  # a name transformers 4.x knows too
    loaded, tok = load_policy(tmp_path / "policy")
    assert _same_weights(model, loaded) and not loaded.training and loaded.dtype == torch.float32
    assert tok.padding_side == "left" and tok.pad_token_id == tokenizer.pad_token_id
    text = format_prompt("Should I adopt a dog this year?")
    assert tok(text)["input_ids"] == tokenizer(text)["input_ids"]

    reference = load_reference(str(tmp_path / "policy"))
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())
    assert _same_weights(model, reference)


class _Recorder:
    """Stands in for a from_pretrained classmethod: records its argument, returns a tiny object."""

    def __init__(self, result):
        self.result, self.calls = result, []

    def __call__(self, name, **kwargs):
        self.calls.append(name)
        return self.result


def test_load_policy_hub_names_and_local_dirs_take_the_same_path(tmp_path, monkeypatch, tokenizer):
    torch.manual_seed(0)
    model = build_model(TINY, tokenizer)
    save_policy(model, tokenizer, tmp_path / "local")
    no_pad = build_tokenizer(["User: hi\nAssistant: hello"], 300)
    no_pad.pad_token = None  # like gpt2's tokenizer
    model_rec, tok_rec = _Recorder(model), _Recorder(no_pad)
    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", model_rec)
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", tok_rec)

    for name in ("gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path / "local", str(tmp_path / "local")):
        no_pad.pad_token = None
        _, tok = load_policy(name)
        assert tok.pad_token == tok.eos_token and tok.padding_side == "left"
    expected = ["gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct", str(tmp_path / "local"), str(tmp_path / "local")]
    assert model_rec.calls == expected and tok_rec.calls == expected


@pytest.mark.parametrize("bad", ["./no-such-policy", "data/no-such-policy", "/tmp/rlhf-lab/none/here", "a/b/c"])
def test_missing_local_path_is_a_clear_error(bad, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # so that "data/..." starts with an existing folder
    with pytest.raises(FileNotFoundError, match="no model directory at .*no-such-policy|none/here|a/b/c"):
        load_policy(bad)


def test_missing_path_object_and_dir_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="tiny-policy.*python -m rlhf_lab.pretrain"):
        load_policy(tmp_path / "tiny-policy")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_policy(tmp_path)


def test_shipped_checkpoint_loads_offline_and_generates():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by tests/conftest.py before transformers is imported
    files = {p.name: p.stat().st_size for p in DEFAULT_POLICY.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "training_log.json"} <= files.keys()
    assert files["model.safetensors"] < 12e6  # a few MB
    model, tokenizer = load_policy(DEFAULT_POLICY)
    assert 1e6 < num_parameters(model) < 4e6
    prompts = ["What do you think about my plan to start a vegetable garden?", "How do I learn Python without stress?"]
    out = sample(model, tokenizer, prompts, SampleConfig(max_new_tokens=60), generator=torch.Generator().manual_seed(0))
    assert all(len(t.split()) >= 1 for t in out.texts), out.texts
    assert (out.response_ids == tokenizer.eos_token_id).any(1).all(), "every response should end with EOS"
    log = json.loads((DEFAULT_POLICY / "training_log.json").read_text())
    assert log["loss"][-1] < log["loss"][0] / 3


# ---------------------------------------------------------------------------- pretraining
def test_pack_and_get_batch(tokenizer, pairs):
    tokens = pack(tokenizer, pairs[:5])
    assert tokens[0] == tokenizer.bos_token_id and tokens[-1] == tokenizer.eos_token_id
    assert (tokens == tokenizer.bos_token_id).sum() == 5 and (tokens == tokenizer.eos_token_id).sum() == 5
    assert (tokens != tokenizer.pad_token_id).all()  # packed: no padding at all
    x, y = get_batch(tokens, 4, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])


def test_lr_schedule():
    config = PretrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_fraction=0.1)
    lrs = [lr_at(s, config) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1) and all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


def _tiny_config(seed: int, steps: int) -> PretrainConfig:
    return PretrainConfig(model=TINY, steps=steps, batch_size=8, lr=1e-2, warmup_steps=5, seed=seed)


def test_pretraining_is_reproducible(pairs):
    a, tok_a, log_a = pretrain(pairs, _tiny_config(seed=1, steps=4), progress=False)
    b, tok_b, log_b = pretrain(pairs, _tiny_config(seed=1, steps=4), progress=False)
    c, _, _ = pretrain(pairs, _tiny_config(seed=2, steps=4), progress=False)
    assert tok_a.get_vocab() == tok_b.get_vocab()
    assert _same_weights(a, b) and log_a["loss"] == log_b["loss"]
    assert not _same_weights(a, c)


def test_a_few_steps_lower_the_loss(pairs):
    config = _tiny_config(seed=0, steps=60)
    model, tokenizer, log = pretrain(pairs[:-24], config, progress=False)
    held_out = pack(tokenizer, pairs[-24:])
    torch.manual_seed(config.seed)
    untrained = build_model(TINY, tokenizer)
    before, after = eval_loss(untrained, held_out, TINY.n_positions), eval_loss(model, held_out, TINY.n_positions)
    assert before > 5.0  # about log(400) = 6.0 at initialisation
    assert after < before - 1.5, (before, after)
    assert sum(log["loss"][-5:]) / 5 < log["loss"][0] - 1.5
    assert log["tokens_per_s"] > 0 and log["params"] == num_parameters(model)


def test_pretrain_command_takes_the_model_shape(monkeypatch, tmp_path):
    """``python -m rlhf_lab.pretrain --n-layer 6 --n-embd 256`` pretrains that shape (a larger backbone, e.g. for a
    reward model); a width that the heads do not divide is refused before any work."""
    from rlhf_lab import pretrain as pretrain_module

    class Stop(Exception):
        pass

    seen = {}

    def record(pairs, config, progress=True):
        seen["config"] = config
        raise Stop   # the shape is all this test needs: no training

    monkeypatch.setattr(pretrain_module, "pretrain", record)
    monkeypatch.setattr(pretrain_module, "build_corpus", lambda *a, **k: [])
    monkeypatch.setattr(pretrain_module, "matmul_flops_per_s", lambda *a, **k: 1.0)
    threads = ["--threads", str(torch.get_num_threads())]
    with pytest.raises(Stop):
        pretrain_module.main(["--out", str(tmp_path), "--n-layer", "6", "--n-embd", "256", *threads])
    shape = seen["config"].model
    assert (shape.n_layer, shape.n_embd, shape.n_head) == (6, 256, TinyGPTConfig.n_head)
    assert shape.vocab_size == TinyGPTConfig.vocab_size and shape.n_positions == TinyGPTConfig.n_positions
    with pytest.raises(Stop):   # no flags: the shipped tiny policy's shape
        pretrain_module.main(["--out", str(tmp_path), *threads])
    assert seen["config"].model == TinyGPTConfig()
    seen.clear()
    with pytest.raises(SystemExit):
        pretrain_module.main(["--out", str(tmp_path), "--n-embd", "100", "--n-head", "3", *threads])
    assert not seen, "a bad shape must be refused before the corpus is built"


def test_presets_follow_the_policy_name(tmp_path):
    from rlhf_lab import models

    assert models.preset(models.DEFAULT_POLICY).name == "tiny"
    tiny = models.preset(models.DEFAULT_POLICY)
    assert (tiny.lr, tiny.num_layers_unfrozen) == (6e-4, 2)          # notebook 05's measured setting
    saved = tmp_path / "policies" / "rloo"                           # a policy trained from the tiny one
    policy, tokenizer = models.load_policy()
    models.save_policy(policy, tokenizer, saved)
    assert models.preset(saved).name == "tiny"
    assert models.preset("gpt2").name == models.preset("openai-community/gpt2").name == "gpt2"
    assert models.preset("HuggingFaceTB/SmolLM2-135M-Instruct").name == "smollm2"
    assert models.preset("meta-llama/Llama-3.2-1B").name == "hub"
    assert models.preset("gpt2").lr < models.preset(models.DEFAULT_POLICY).lr
    assert models.preset("gpt2").num_layers_unfrozen is None         # a hub model trains every parameter
    assert (tiny.unfrozen(None), tiny.unfrozen(-1), tiny.unfrozen(3)) == (2, None, 3)   # a notebook's parameter
    assert models.preset("gpt2").unfrozen(None) is None and models.preset("gpt2").unfrozen(1) == 1


def test_auto_device_is_the_gpu_when_there_is_one(monkeypatch):
    import torch

    from rlhf_lab import models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert models.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.resolve_device("auto") == torch.device("cuda")
    assert models.resolve_device("cpu") == torch.device("cpu")
