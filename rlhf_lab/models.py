"""The tiny policy: its tokenizer, its chat format, and how to build, save and load it.

The course's language model is a real ``transformers`` GPT-2 (``GPT2LMHeadModel``), only
small: about 2 M parameters, pretrained in a few CPU minutes by ``python -m rlhf_lab.pretrain``
and shipped in ``data/tiny-policy``. Because it is an ordinary ``save_pretrained`` directory,
the one function that loads it, :func:`load_policy`, also loads any hub model ("gpt2",
"HuggingFaceTB/SmolLM2-135M-Instruct"): the name goes straight to ``from_pretrained``.

The chat format is owned here and nowhere else. A prompt and its response read::

    <|bos|>User: Is it hard to learn Python?\\nAssistant: Practice a little every day.<|eos|>

``format_prompt`` writes ``User: ...\\nAssistant:``, ``format_response`` the space and the reply;
the tokenizer adds ``<|bos|>`` and ``tokenize_responses`` the ``<|eos|>``. A response is every
token after ``Assistant:`` up to and including ``<|eos|>``.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
import transformers
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel,
                          PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast)

from rlhf_lab.paths import DATA

#: The shipped tiny policy (tokenizer + weights), rebuilt by ``python -m rlhf_lab.pretrain``.
DEFAULT_POLICY = DATA / "tiny-policy"
#: Special tokens of the course tokenizer: start of a conversation, end of a response, padding.
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


# ---------------------------------------------------------------------------- chat format
#: Where the course frame's next turn starts: a reply of a model without a chat template stops here.
USER_TURN = "\nUser:"


def has_chat_template(tokenizer: PreTrainedTokenizerBase | None) -> bool:
    """Whether ``tokenizer`` brings its own chat template (a chat model such as SmolLM2-Instruct)."""
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def format_prompt(prompt_text: str, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
    """The text the model sees before its reply.

    The course frame ``"User: <prompt>\nAssistant:"``, which the tiny policy was pretrained on, or, when
    ``tokenizer`` has a chat template, that template with the prompt as the user's message and the
    assistant's turn opened (``apply_chat_template(..., add_generation_prompt=True)``). Every part of the
    course (pretraining, sampling, reward models, DPO, the TRL export) goes through this one function and
    :func:`format_response`, so the policy and the reward model always see the same format.
    """
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt_text.strip()}], tokenize=False,
                                             add_generation_prompt=True)
    return f"User: {prompt_text.strip()}\nAssistant:"


def format_response(response_text: str, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
    """The text of a reply as it follows :func:`format_prompt`: one space, then the reply (with a chat template:
    the reply itself). The token that ends it (:func:`end_of_reply_id`) is added as a token, not as text."""
    return response_text.strip() if has_chat_template(tokenizer) else " " + response_text.strip()


def end_of_reply_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that ends a reply: the chat template's end-of-turn token (``<|im_end|>`` for ChatML), else EOS.

    Found by rendering a one-turn conversation and taking the first special token after the reply.
    """
    if has_chat_template(tokenizer):
        key = (tokenizer.name_or_path, tokenizer.chat_template, len(tokenizer))
        if key not in _END_OF_TURN:
            marker = "rlhf-lab-reply-marker"
            text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"},
                                                  {"role": "assistant", "content": marker}], tokenize=False)
            after = tokenizer(text.split(marker, 1)[-1], add_special_tokens=False)["input_ids"]
            special = set(tokenizer.all_special_ids)
            _END_OF_TURN[key] = next((i for i in after if i in special), tokenizer.eos_token_id)
        return _END_OF_TURN[key]
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no eos_token: a response could never end")
    return tokenizer.eos_token_id


_END_OF_TURN: dict[tuple, int] = {}


def tokenize_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Iterable[str]) -> list[list[int]]:
    """Token ids of ``format_prompt(p, tokenizer)`` for each prompt, with the tokenizer's own special tokens
    (our BOS); a chat template writes its own, so none are added to it."""
    texts = [format_prompt(p, tokenizer) for p in prompts]
    return tokenizer(texts, add_special_tokens=not has_chat_template(tokenizer))["input_ids"] if texts else []


def tokenize_responses(tokenizer: PreTrainedTokenizerBase, responses: Iterable[str]) -> list[list[int]]:
    """Token ids of ``format_response(r, tokenizer)`` followed by :func:`end_of_reply_id` (EOS, or the chat
    template's end-of-turn token) for each response (no BOS)."""
    end = end_of_reply_id(tokenizer)
    texts = [format_response(r, tokenizer) for r in responses]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [row + [end] for row in ids]


# ---------------------------------------------------------------------------- build
@dataclass
class TinyGPTConfig:
    """Size of the course's tiny GPT-2 (nanoGPT's ``GPTConfig``, in GPT-2's own names)."""
    vocab_size: int = 1024   # BPE vocabulary the tokenizer is trained to (256 bytes + 3 specials + merges)
    n_positions: int = 128   # context length: prompt + response must fit
    n_embd: int = 192        # width of the residual stream; 192 keeps CPU matmuls efficient (see pretrain.py)
    n_layer: int = 4         # transformer blocks
    n_head: int = 4          # attention heads per block (head size n_embd / n_head = 48)
    dropout: float = 0.0     # dropout everywhere; 0 because the corpus is seen only a few times


def build_tokenizer(texts: Iterable[str], vocab_size: int = TinyGPTConfig.vocab_size) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (GPT-2's scheme) on ``texts`` and wrap it for ``transformers``.

    Byte-level means every string can be encoded (no unknown token); ``vocab_size`` counts the
    256 byte tokens, the three special tokens and the learned merges. Encoding a text with
    ``add_special_tokens=True`` prepends BOS; EOS is appended by :func:`tokenize_responses`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if vocab_size < 260:
        raise ValueError(f"vocab_size={vocab_size} is too small: byte-level BPE needs 256 bytes + 3 special tokens")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   padding_side="left", model_max_length=TinyGPTConfig.n_positions)


def build_model(config: TinyGPTConfig, tokenizer: PreTrainedTokenizerBase) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 of the given size whose vocabulary and special ids match ``tokenizer``.

    Seed torch first (``rlhf_lab.set_seed``) for reproducible weights. Input and output embeddings
    are tied (GPT-2), so ``model.num_parameters()`` counts them once.
    """
    gpt2_config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=config.n_positions, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head,
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        activation_function="gelu_pytorch_tanh",  # GPT-2's tanh GELU, as one fused kernel
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(gpt2_config)
    _set_generation_ids(model, tokenizer)
    return model


# ---------------------------------------------------------------------------- save / load
@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' loading report and progress bars while loading or saving a small local model
    (a new head's missing weights are expected; a bar for 52 tensors is noise in a notebook)."""
    from transformers.utils import logging
    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def save_policy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> Path:
    """Save weights (safetensors) and tokenizer with ``save_pretrained``; returns the directory."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    portable_tokenizer_config(path)
    return path


def portable_tokenizer_config(path: str | Path) -> None:
    """Make a saved tokenizer loadable by transformers 4.x as well as 5.x.

    transformers 5 names the generic fast tokenizer "TokenizersBackend"; 4.x knows it only as
    PreTrainedTokenizerFast (5.x accepts both), so the old name is written and both can load the folder.
    """
    config_file = Path(path) / "tokenizer_config.json"
    tokenizer_config = json.loads(config_file.read_text(encoding="utf-8"))
    if tokenizer_config.get("tokenizer_class") == "TokenizersBackend":
        tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config_file.write_text(json.dumps(tokenizer_config, indent=2) + "\n", encoding="utf-8")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the GPU (``"cuda"``) when there is one, else ``"cpu"``; any other name or device as it is."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class Preset:
    """Settings that depend on the policy: the course's notebooks take theirs from here unless you set them.

    The tiny policy's values are the ones the course measured on a 2-core CPU (notebooks 03-08). The hub
    models' are starting points, not tuned here (no hub in the course's CI): learning rates about ten times
    above TRL's defaults for billion-parameter models (1e-6), as for models of about 130 M parameters,
    micro-batches so that a batch fits a 16 GB GPU (Colab's T4), and longer replies.
    """
    name: str                        # "tiny", "gpt2", "smollm2" or "hub" (any other model)
    lr: float                        # REINFORCE, RLOO and GRPO (notebooks 05, 06, 08)
    num_layers_unfrozen: int | None  # REINFORCE, RLOO, GRPO and PPO train only the top blocks (None: every parameter)
    ppo_lr: float                    # PPO (notebook 06): it takes ppo_epochs x minibatches steps per batch
    dpo_lr: float                    # DPO (notebook 07)
    rm_lr: float                     # reward model on the policy's backbone (notebooks 03, 09)
    prompts_per_step: int            # RL: distinct prompts per batch
    samples_per_prompt: int          # RL: responses per prompt
    max_new_tokens: int              # response length cap
    micro_batch_size: int | None     # rows per forward pass with gradients (None: the whole batch)
    dtype: str                       # the policy's weights ("float32"; mixed precision is TRL's bf16=True)

    def unfrozen(self, requested: int | None) -> int | None:
        """A notebook's ``num_layers_unfrozen`` parameter as ``PGConfig`` takes it: None gives this preset's,
        -1 every parameter (None), N the top N blocks."""
        if requested is None:
            return self.num_layers_unfrozen
        return None if requested < 0 else requested


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", lr=6e-4, num_layers_unfrozen=2, ppo_lr=3e-4, dpo_lr=1e-4, rm_lr=5e-4, prompts_per_step=16,
                   samples_per_prompt=4, max_new_tokens=56, micro_batch_size=None, dtype="float32"),
    "gpt2": Preset("gpt2", lr=1e-5, num_layers_unfrozen=None, ppo_lr=5e-6, dpo_lr=5e-6, rm_lr=1e-5, prompts_per_step=16,
                   samples_per_prompt=4, max_new_tokens=64, micro_batch_size=16, dtype="float32"),
    "smollm2": Preset("smollm2", lr=1e-5, num_layers_unfrozen=None, ppo_lr=5e-6, dpo_lr=5e-6, rm_lr=1e-5, prompts_per_step=16,
                      samples_per_prompt=4, max_new_tokens=96, micro_batch_size=16, dtype="float32"),
    "hub": Preset("hub", lr=1e-5, num_layers_unfrozen=None, ppo_lr=5e-6, dpo_lr=5e-6, rm_lr=1e-5, prompts_per_step=16,
                  samples_per_prompt=4, max_new_tokens=64, micro_batch_size=8, dtype="float32"),
}


def preset(name_or_path: str | Path) -> Preset:
    """The :class:`Preset` for a policy: ``"tiny"`` for the shipped tiny policy (or a folder saved from it, such
    as a trained policy in ``artifacts/policies``), ``"gpt2"`` for GPT-2 (``gpt2``, ``openai-community/gpt2``),
    ``"smollm2"`` for the SmolLM2 family, ``"hub"`` for any other model."""
    text = str(name_or_path)
    folder = Path(text).expanduser()
    if folder.is_dir():
        config = folder / "config.json"
        if folder.resolve() == DEFAULT_POLICY.resolve() or (config.exists() and _same_architecture(config)):
            return PRESETS["tiny"]
    base = text.rstrip("/").split("/")[-1].lower()
    if base in ("gpt2", "distilgpt2"):
        return PRESETS["gpt2"]
    if base.startswith("smollm2"):
        return PRESETS["smollm2"]
    return PRESETS["hub"]


def _same_architecture(config: Path) -> bool:
    """Whether a saved model's config.json has the tiny policy's shape (a policy trained from it)."""
    keys = ("model_type", "n_embd", "n_layer", "n_head", "vocab_size")
    try:
        theirs = json.loads(config.read_text())
        ours = json.loads((DEFAULT_POLICY / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return all(theirs.get(k) == ours.get(k) for k in keys)


def load_policy(name_or_path: str | Path = DEFAULT_POLICY, *, device: str | torch.device = "cpu",
                dtype: torch.dtype | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory or a hub name, the same way.

    Both go straight to ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``:
    a hub name ("gpt2") is passed unchanged, a local directory as its path. A tokenizer without a pad
    token gets its EOS as pad (masks, not token ids, say what is padding), and padding goes on the
    left so that every prompt in a batch ends where generation starts.

    dtype: weights' dtype; None means float32 (what a CPU computes in; transformers 5 would otherwise
    use the checkpoint's own dtype). Pass ``torch.bfloat16`` for a big hub model on a GPU.
    Returns the model in eval mode on ``device`` (``"auto"``: the GPU if there is one, see :func:`resolve_device`).
    """
    device = resolve_device(device)
    source = resolve_model_source(name_or_path)
    dtype = dtype or torch.float32
    dtype_kw = "dtype" if transformers_at_least(4, 56) else "torch_dtype"
    quiet = Path(str(source)).is_dir()          # a hub download keeps its progress bars
    with quiet_transformers() if quiet else contextlib.nullcontext():
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **{dtype_kw: dtype})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    _set_generation_ids(model, tokenizer)
    return model.to(device).eval(), tokenizer


def load_reference(name_or_path: str | Path = DEFAULT_POLICY, *, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None) -> PreTrainedModel:
    """The reference model of RLHF: the policy as loaded, frozen (eval mode, no gradients)."""
    model, _ = load_policy(name_or_path, device=device, dtype=dtype)
    return freeze(model)


def frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A frozen deep copy of ``model`` (the reference, taken from a policy already in memory)."""
    return freeze(copy.deepcopy(model))


def trainable_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A deep copy of ``model`` whose parameters all take gradients (a fresh policy to train from the same start),
    in eval mode like the rest of the course's policies."""
    copy_ = copy.deepcopy(model).eval()
    for p in copy_.parameters():
        p.requires_grad_(True)
    return copy_


def freeze(model: PreTrainedModel) -> PreTrainedModel:
    """Put ``model`` in eval mode and turn off gradients for all its parameters; returns it."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def decoder_blocks(model: PreTrainedModel) -> torch.nn.ModuleList:
    """The transformer blocks of a causal LM, bottom first: ``transformer.h`` (GPT-2), ``model.layers``
    (Llama, SmolLM2), ``gpt_neox.layers`` (Pythia)."""
    base = model.base_model
    for name in ("h", "layers"):
        blocks = getattr(base, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    raise ValueError(f"cannot find the transformer blocks of {type(model).__name__} (looked for "
                     f"{type(base).__name__}.h and .layers)")


def freeze_bottom_layers(model: PreTrainedModel, num_layers_unfrozen: int) -> list[torch.nn.Parameter]:
    """Train only the top ``num_layers_unfrozen`` transformer blocks and what sits above them (the final norm;
    an output layer not tied to the embeddings); freeze the embeddings and every block below. Returns the
    parameters that still take gradients.

    trlX's ``num_layers_unfrozen`` freezes the bottom blocks only; here the embeddings are frozen too, because a
    small model's output layer is tied to them: what it spells stays the reference's, and RL changes which
    sentence the upper blocks choose (measured in ``benchmarks/frozen_layers.py``). Parameters above the frozen
    part keep the ``requires_grad`` they had.
    """
    blocks = decoder_blocks(model)
    if not 0 <= num_layers_unfrozen <= len(blocks):
        raise ValueError(f"num_layers_unfrozen must be between 0 and the model's {len(blocks)} blocks, "
                         f"got {num_layers_unfrozen}")
    keep = {id(p) for block in blocks[len(blocks) - num_layers_unfrozen:] for p in block.parameters()}
    for name in ("ln_f", "norm", "final_layer_norm"):      # GPT-2, Llama, Pythia
        final_norm = getattr(model.base_model, name, None)
        if isinstance(final_norm, torch.nn.Module):
            keep |= {id(p) for p in final_norm.parameters()}
    for p in model.base_model.parameters():
        if id(p) not in keep:
            p.requires_grad_(False)
    if checkpointing_on(model):       # checkpointed blocks above frozen embeddings need inputs that take gradients
        model.enable_input_require_grads()
    return [p for p in model.parameters() if p.requires_grad]


# ---------------------------------------------------------------------------- gradient checkpointing
def checkpointing_on(model: PreTrainedModel) -> bool:
    """Whether activation checkpointing (also called gradient checkpointing) is enabled on ``model``.

    Turn it on with ``model.gradient_checkpointing_enable()`` (transformers 5 also names it
    ``activation_checkpointing_enable``): each layer then keeps only its input for the backward pass and
    recomputes the rest, about a third more compute for much less activation memory.
    """
    import warnings

    with warnings.catch_warnings():   # transformers 5 renamed the property; either name works
        warnings.simplefilter("ignore", FutureWarning)
        for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
            if hasattr(type(model), name):
                return bool(getattr(model, name))
    return False


def enable_checkpointing(model: PreTrainedModel) -> PreTrainedModel:
    """Turn on activation checkpointing under the name this transformers version uses; returns ``model``.

    The course's trainers then really checkpoint: they train in train mode with dropout off
    (:func:`disable_dropout`, :func:`gradient_forward`).
    """
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    return model


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Set every dropout probability of ``model`` to 0 (as TRL's ``disable_dropout_in_model``); returns it.

    The course trains policies with dropout off, so that sampling, old and new log-probabilities agree. It
    does so in eval mode, but transformers checkpoints activations only in train mode; with dropout at 0 the
    two modes compute the same numbers, so a checkpointed policy can train in train mode.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for name in ("attn_pdrop", "resid_pdrop", "embd_pdrop", "attention_dropout", "hidden_dropout", "dropout"):
        if isinstance(getattr(model.config, name, None), float):
            setattr(model.config, name, 0.0)   # attention kernels that read the rate from the config
    return model


@contextlib.contextmanager
def gradient_forward(model: PreTrainedModel):
    """Run the block's forward passes (those with gradients) in train mode when ``model`` checkpoints activations.

    transformers skips checkpointing in eval mode, where the course's trainers keep their policies; this
    puts the model in train mode for the block and back in eval mode after. Without checkpointing it does
    nothing. Call :func:`disable_dropout` first (the trainers do) so that train mode adds no dropout.
    """
    if not checkpointing_on(model) or model.training:
        yield
        return
    model.train()
    try:
        yield
    finally:
        model.eval()


# ---------------------------------------------------------------------------- helpers
def resolve_model_source(name_or_path: str | Path) -> str:
    """The string to hand to ``from_pretrained``: a local directory, or a hub name unchanged.

    Raises FileNotFoundError for something that is clearly meant as a local path but is missing
    (a ``Path``, an absolute or ``./`` path, a path with two or more ``/``, or one whose first
    part is an existing local directory, such as ``data/tiny-policy`` run from the repo root).
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path.resolve()} is a directory but has no config.json: "
                                    "not a save_pretrained model directory")
        return str(path)
    first = text.split("/")[0]
    looks_like_path = (isinstance(name_or_path, Path) or text.startswith(("/", ".", "~")) or "\\" in text
                       or text.count("/") >= 2 or ("/" in text and Path(first).expanduser().is_dir()))
    if looks_like_path or path.exists():
        hint = (" Rebuild the course's tiny policy with: python -m rlhf_lab.pretrain"
                if path.name == DEFAULT_POLICY.name else "")
        raise FileNotFoundError(f"no model directory at {path.resolve()} "
                                f"(load_policy got {name_or_path!r}).{hint}")
    return text


def _set_generation_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Make ``model.generate`` stop where a reply ends (:func:`end_of_reply_id`) and pad with the pad token."""
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = end_of_reply_id(tokenizer)


def transformers_at_least(major: int, minor: int) -> bool:
    version = tuple(int(x) for x in transformers.__version__.split(".")[:2])
    return version >= (major, minor)


def num_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


# Keep the tokenizer's library quiet about forking when notebooks use DataLoaders.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
