"""Tiny random stand-ins for the hub models notebook 09 names, built offline from configs.

* ``build_llama_chat(folder)``: a Llama-architecture model (SmolLM2's) whose tokenizer has a ChatML chat
  template (``<|im_start|>user ... <|im_end|>``), as ``HuggingFaceTB/SmolLM2-135M-Instruct`` has; its
  end-of-turn token ``<|im_end|>`` is not its EOS, so the course must find it from the template.
* ``build_gpt2_own_tokenizer(folder)``: a GPT-2 with a byte-level BPE of its own (not the course's), and no
  chat template, as ``gpt2`` has.
Both are saved with ``save_pretrained`` and load through ``models.load_policy(folder)`` like a hub name.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from rlhf_lab import models, world

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _corpus() -> list[str]:
    prompts = world.load_prompts()
    pairs = world.make_pairs(prompts, 200, seed=0)
    return [p.text for p in prompts] + [text for _, a, b in pairs for text in (a, b)]


def build_llama_chat(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    tokenizer = models.build_tokenizer(_corpus(), vocab_size=400)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    tokenizer.model_max_length = 256
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    models.save_policy(LlamaForCausalLM(config), tokenizer, folder)
    return folder


def build_gpt2_own_tokenizer(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    tokenizer = models.build_tokenizer(_corpus()[::-1], vocab_size=350)
    tokenizer.model_max_length = 256
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=64, n_layer=2, n_head=4,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    models.save_policy(GPT2LMHeadModel(config), tokenizer, folder)
    return folder
