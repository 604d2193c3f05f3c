"""Judging policies: gold reward, win rate, KL to the reference, diversity, blind hand evaluation, and
the over-optimisation sweep.

The course can judge by the **gold reward** (the simulated "what people prefer" of ``rlhf_lab.world``),
which real RLHF never has, as well as by the proxy reward model and by hand. The pieces, top to bottom:

- gold reward, win rate (ties split), head-to-head :func:`compare`, :func:`kl_to_reference`, :func:`distinct_n`;
- **best-of-n** (:func:`best_of_n_pool`, :func:`best_of_n_kl`, :func:`best_of_n_expected`): n samples, the
  reward model's favourite returned; its KL to the base policy is at most log n - (n-1)/n;
- the **over-optimisation sweep** (Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization",
  https://arxiv.org/abs/2210.10760): proxy and gold reward as functions of KL, for best-of-n at several n
  (:func:`best_of_n_curve`) and for the per-step logs of RL runs (:func:`rl_curve`, :func:`rl_curves`);
- one **report row** per policy (:func:`evaluation_table`): gold, proxy, KL, win rate vs the reference,
  distinct-2, for a dict of named policies on the same held-out prompts with fixed seeds;
- **blind hand evaluation** (:func:`blind_pairs`, :func:`unblind`): two policies' responses with the sides
  shuffled by a seeded generator, rated with ``widgets.rate_blind`` (notebook 02's pairwise widget, or the
  simulated rater), then unblinded into a win rate. This module imports no widget: the widgets use it.
"""
from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Union

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_lab import world
from rlhf_lab.generation import MAX_NEW_TOKENS

#: A batched reward function: ``(prompts, responses) -> (B,)`` float tensor (gold, or a reward model's score).
RewardFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor]


def gold_reward_fn(prompts: Sequence[str], responses: Sequence[str],
                   ended: Sequence[bool] | torch.Tensor | None = None) -> torch.Tensor:
    """The gold reward as a batched reward function: (prompts, responses) -> (B,) float tensor.

    ``ended`` (B,) says which replies ended with EOS (``Samples.ended``); a reply that did not is
    unfinished to the gold reward even when its text stops at a full stop. None: all ended.
    """
    ended = [True] * len(responses) if ended is None else [bool(e) for e in ended]
    return torch.tensor([world.gold_reward(p, r, e) for p, r, e in zip(prompts, responses, ended)],
                        dtype=torch.float32)


def win_rate(scores_a: torch.Tensor, scores_b: torch.Tensor) -> float:
    """Share of paired comparisons A wins, ties split: mean of 1[a > b] + 0.5 * 1[a == b].  Inputs (N,)."""
    a, b = torch.as_tensor(scores_a, dtype=torch.float32), torch.as_tensor(scores_b, dtype=torch.float32)
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(f"win_rate needs two non-empty score lists of the same length, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    return ((a > b).float() + 0.5 * (a == b).float()).mean().item()


@dataclass
class Comparison:
    """Head-to-head result of two policies on the same prompts."""
    win_rate: float            # share of prompts where A's response has the higher gold reward (ties split)
    gold_a: float              # mean gold reward of A's responses
    gold_b: float              # mean gold reward of B's responses
    prompts: list[str]         # the N prompts
    texts_a: list[str]         # A's responses (N,)
    texts_b: list[str]         # B's responses (N,)


def _sample(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_new_tokens: int,
            seed: int | torch.Generator):
    """One response per prompt at temperature 1 from a seeded generator (``generation.Samples``)."""
    from rlhf_lab.generation import SampleConfig, sample

    generator = seed if isinstance(seed, torch.Generator) else torch.Generator(device=policy.device).manual_seed(seed)
    return sample(policy, tokenizer, list(prompts), SampleConfig(max_new_tokens=max_new_tokens), generator)


def compare(policy_a: PreTrainedModel, policy_b: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
            prompts: Sequence[str], samples_per_prompt: int = 1, max_new_tokens: int = MAX_NEW_TOKENS, seed: int = 0,
            judge: RewardFn = gold_reward_fn) -> Comparison:
    """Sample one response per prompt (``samples_per_prompt`` times) from each policy and judge each pair."""
    batch = [p for p in prompts for _ in range(samples_per_prompt)]
    texts_a = _sample(policy_a, tokenizer, batch, max_new_tokens, seed).texts
    texts_b = _sample(policy_b, tokenizer, batch, max_new_tokens, seed + 1).texts
    a, b = judge(batch, texts_a), judge(batch, texts_b)
    return Comparison(win_rate(a, b), a.mean().item(), b.mean().item(), batch, texts_a, texts_b)


@torch.no_grad()
def _kl_per_response(samples, ref_model: PreTrainedModel) -> torch.Tensor:
    """log pi(y|x) - log pi_ref(y|x) for each sampled response y ~ pi. Shape (B,)."""
    from rlhf_lab.generation import response_logprobs

    ref = response_logprobs(ref_model, samples.prompt_ids, samples.prompt_mask, samples.response_ids,
                            samples.response_mask)
    return (samples.logprobs - ref).sum(1)


@torch.no_grad()
def kl_to_reference(policy: PreTrainedModel, ref_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    prompts: Sequence[str], samples_per_prompt: int = 1, max_new_tokens: int = MAX_NEW_TOKENS,
                    seed: int = 0) -> float:
    """Monte-Carlo KL(pi || pi_ref) in nats per response: mean over samples y ~ pi of log pi(y|x) - log pi_ref(y|x)."""
    batch = [p for p in prompts for _ in range(samples_per_prompt)]
    return _kl_per_response(_sample(policy, tokenizer, batch, max_new_tokens, seed), ref_model).mean().item()


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` passed: the chance that at least one of ``k`` samples
    drawn without replacement from the ``n`` passes, ``1 - C(n - c, k) / C(n, k)`` (Chen et al. 2021, Eq. 1)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Diversity: distinct word n-grams / all word n-grams over the texts (Li et al. 2016). 0 for no n-grams."""
    grams = [tuple(ws[i:i + n]) for t in texts for ws in [world.words(t)] for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


# ----------------------------------------------------------------------------- best-of-n
def best_of_n_kl(n: int) -> float:
    """KL(pi_BoN || pi) = log n - (n-1)/n nats: the closed form for best-of-n (Stiennon et al. 2020),
    an upper bound on the true KL (Beirami et al. 2024). 0 for n = 1."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"best-of-n needs a whole number n >= 1, got {n!r}")
    return math.log(n) - (n - 1) / n


@dataclass
class BestOfNPool:
    """N samples per prompt from one policy, with their proxy and gold rewards: everything best-of-n needs.

    Row i of ``proxy``/``gold`` holds the N samples of ``prompts[i]`` in the order they were drawn, so
    "best of the first n" is a best-of-n draw for every n <= N.
    """
    prompts: list[str]       # P prompt texts
    texts: list[list[str]]   # (P, N) responses
    proxy: torch.Tensor      # (P, N) proxy reward (the reward model's score) of each response
    gold: torch.Tensor       # (P, N) gold reward of each response

    @property
    def n_max(self) -> int:
        """N, the samples per prompt: the largest n this pool can evaluate."""
        return self.proxy.shape[1]

    def picks(self, n: int, block: int = 0) -> list[str]:
        """Best-of-n, once per prompt: the response the proxy scores highest among samples
        ``block * n`` to ``(block + 1) * n - 1`` (disjoint blocks give independent best-of-n draws). (P,) texts."""
        self._check(n * (block + 1))
        best = self.proxy[:, block * n:(block + 1) * n].argmax(1) + block * n
        return [row[j] for row, j in zip(self.texts, best.tolist())]

    def _check(self, n: int) -> None:
        best_of_n_kl(n)
        if n > self.n_max:
            raise ValueError(f"this pool has {self.n_max} samples per prompt; {n} are needed")


def best_of_n_pool(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], n: int,
                   proxy_fn: RewardFn, gold_fn: RewardFn = gold_reward_fn, max_new_tokens: int = MAX_NEW_TOKENS, seed: int = 0,
                   chunk: int = 512) -> BestOfNPool:
    """Draw ``n`` samples for each prompt (prompt-major) from one seeded generator and score them by proxy and gold.

    The batch is ``[p0, p0, ..., p1, p1, ...]`` (each prompt ``n`` times, in order), sampled ``chunk`` rows at a
    time (a CPU samples a few hundred rows per call fastest); up to ``chunk`` rows it is the same draw as
    ``generation.sample`` on that list with ``torch.Generator().manual_seed(seed)``.
    """
    best_of_n_kl(n)
    prompts = [world.prompt_text(p) for p in prompts]
    batch = [p for p in prompts for _ in range(n)]
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    texts = [t for i in range(0, len(batch), chunk)
             for t in _sample(policy, tokenizer, batch[i:i + chunk], max_new_tokens, generator).texts]
    proxy = torch.as_tensor(proxy_fn(batch, texts), dtype=torch.float32).view(len(prompts), n)
    gold = torch.as_tensor(gold_fn(batch, texts), dtype=torch.float32).view(len(prompts), n)
    return BestOfNPool(prompts, [texts[i * n:(i + 1) * n] for i in range(len(prompts))], proxy, gold)


def best_of_n_expected(proxy: torch.Tensor, values: torch.Tensor, n: int) -> float:
    """Unbiased estimate of E[value of the best-of-n pick], averaged over prompts (as Gao et al. 2022 draw their
    best-of-n curves).

    With N >= n samples of a prompt sorted by proxy score, the i-th lowest (1-based) is the best of a random
    n-subset with probability C(i-1, n-1) / C(N, n); the estimate is that weighted sum of ``values``. It uses
    all N samples instead of the first n, so the curve is much smoother than one draw, and for n = 1 it is
    the plain mean of the samples. Shapes: proxy (P, N), values (P, N) (e.g. gold or proxy reward).
    """
    proxy, values = torch.as_tensor(proxy, dtype=torch.float64), torch.as_tensor(values, dtype=torch.float64)
    if proxy.dim() != 2 or proxy.shape != values.shape:
        raise ValueError(f"proxy and values must both be (prompts, samples), got {tuple(proxy.shape)} "
                         f"and {tuple(values.shape)}")
    N = proxy.shape[1]
    best_of_n_kl(n)
    if n > N:
        raise ValueError(f"best-of-{n} needs at least {n} samples per prompt, got {N}")
    weights = torch.tensor([math.comb(i - 1, n - 1) for i in range(1, N + 1)], dtype=torch.float64) / math.comb(N, n)
    order = proxy.argsort(dim=1, stable=True)                 # ascending proxy
    return (values.gather(1, order) * weights).sum(1).mean().item()


# ----------------------------------------------------------------------------- over-optimisation (Gao et al. 2022)
@dataclass
class OveroptCurve:
    """Proxy and gold reward against KL to the reference for one way of optimising (Gao et al. 2022, Fig. 1).

    Gao et al. plot rewards against d = sqrt(KL): best-of-n follows gold = d (alpha - beta d) and RL
    gold = d (alpha - beta log d); the proxy keeps rising while the gold reward peaks and then falls.
    """
    name: str              # e.g. "best-of-n" or "RLOO"
    kind: str              # "best-of-n" (analytic KL) or "rl" (per-step training log)
    kl: list[float]        # KL to the reference, nats per response, one per point
    proxy: list[float]     # mean proxy reward at each point
    gold: list[float]      # mean gold reward at each point
    labels: list[str]      # what each point is: "n=4", "step 12"

    def __len__(self) -> int:
        return len(self.kl)


def best_of_n_curve(pool: BestOfNPool, ns: Sequence[int] | None = None, name: str = "best-of-n") -> OveroptCurve:
    """Best-of-n at each n in ``ns`` (default 1, 2, 4, ... up to the pool's N): the analytic KL and the
    unbiased expected proxy and gold reward of the pick (:func:`best_of_n_expected`)."""
    ns = list(ns) if ns is not None else [2 ** i for i in range(int(math.log2(pool.n_max)) + 1)]
    for n in ns:
        pool._check(n)
    return OveroptCurve(name, "best-of-n", [best_of_n_kl(n) for n in ns],
                        [best_of_n_expected(pool.proxy, pool.proxy, n) for n in ns],
                        [best_of_n_expected(pool.proxy, pool.gold, n) for n in ns], [f"n={n}" for n in ns])


#: What each per-step row of a ``policy_gradient.train`` log must hold for the sweep.
RL_LOG_KEYS = ("kl", "proxy_reward", "gold_reward")


def rl_curve(log: Sequence[Mapping[str, float]], name: str, source: str = "the log") -> OveroptCurve:
    """An RL run's checkpoints from its per-step log (``policy_gradient.train``'s rows, with ``gold_fn`` set).

    Each step's row is one point: the KL (nats per response), proxy and gold reward of that step's training
    batch, measured on the policy as it was at that step. ``source`` names the file in error messages.
    """
    if not isinstance(log, Sequence) or isinstance(log, (str, bytes)) or not log:
        raise ValueError(f"{source}: expected a non-empty list of per-step rows (policy_gradient.train's log), "
                         f"got {type(log).__name__}")
    for i, row in enumerate(log):
        missing = [k for k in RL_LOG_KEYS if not isinstance(row, Mapping) or k not in row]
        if missing:
            raise ValueError(f"{source}: row {i} has no {', '.join(missing)} (an RL log row needs {RL_LOG_KEYS}; "
                             "was the run trained with gold_fn=...?)")
    return OveroptCurve(name, "rl", [float(r["kl"]) for r in log], [float(r["proxy_reward"]) for r in log],
                        [float(r["gold_reward"]) for r in log], [f"step {r.get('step', i)}" for i, r in enumerate(log)])


def load_train_log(folder: str | Path) -> list[dict] | dict | None:
    """The ``train_log.json`` a notebook saved next to a policy (None if there is none); a clear error if unreadable."""
    path = Path(folder) / "train_log.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err


#: The policies notebooks 05-07 train and save to ``ARTIFACTS / "policies" / name``, and the notebook making each.
TRAINED_POLICIES = {"reinforce": "05", "rloo": "05", "grpo": "06", "ppo": "06", "dpo": "07"}
#: Those trained by policy gradient, whose per-step log can give an over-optimisation curve.
RL_POLICIES = ("reinforce", "rloo", "grpo", "ppo")


def policies_folder() -> Path:
    """``ARTIFACTS / "policies"``, read when called (so ``RLHF_LAB_ARTIFACTS`` set later still counts)."""
    from rlhf_lab.paths import ARTIFACTS

    return ARTIFACTS / "policies"


def rl_curves(names: Sequence[str] = RL_POLICIES, folder: str | Path | None = None
              ) -> tuple[list[OveroptCurve], dict[str, str]]:
    """The over-optimisation curves of the saved RL runs: ``(curves, skipped)``.

    ``skipped`` maps each name without a usable per-step log to the reason (no policy folder, no
    ``train_log.json``, or a log of another shape, such as DPO's).
    """
    folder = Path(folder) if folder is not None else policies_folder()
    curves, skipped = [], {}
    for name in names:
        path = folder / name
        log = load_train_log(path)
        if log is None:
            made_by = TRAINED_POLICIES.get(name)
            skipped[name] = (f"no {path / 'train_log.json'}: the run that saved {path} kept no per-step log"
                             if path.exists() else
                             f"no policy at {path}" + (f" (notebook {made_by} makes it)" if made_by else ""))
            continue
        try:
            curves.append(rl_curve(log, name.upper(), str(path / "train_log.json")))
        except ValueError as err:
            skipped[name] = str(err)
    return curves, skipped


# ----------------------------------------------------------------------------- the report table
@dataclass(frozen=True)
class BestOfN:
    """Best-of-n as an entry of :func:`evaluation_table`: ``n`` samples of ``base`` per prompt, the proxy's pick.

    With a ``pool`` (drawn by :func:`best_of_n_pool` from ``base`` on the table's prompts, scored by the same
    proxy) the picks come from its disjoint blocks of n samples instead of new samples: the over-optimisation
    sweep and the table then share one draw.
    """
    base: PreTrainedModel              # the policy that draws the n samples (usually the reference)
    n: int                             # samples per prompt; KL to ``base`` <= log n - (n-1)/n
    pool: BestOfNPool | None = None    # optional: samples already drawn (needs n * samples_per_prompt per prompt)


#: What :func:`evaluation_table` can judge: a causal LM, or best-of-n over one.
PolicyLike = Union[PreTrainedModel, BestOfN]


@dataclass
class ReportRow:
    """One policy judged on the held-out prompts (one row of notebook 08's table)."""
    policy: str            # the policy's name
    gold_reward: float     # mean gold reward of its responses
    proxy_reward: float    # mean proxy reward (the reward model's score) of its responses
    kl: float              # KL to the reference, nats per response (Monte Carlo; best-of-n: the closed form)
    win_rate: float        # share of prompts where it beats the reference's response by gold (ties split)
    distinct_2: float      # distinct word bigrams / all word bigrams over its responses (diversity)
    n: int                 # responses judged (prompts x samples per prompt)
    texts: list[str] = field(default_factory=list, repr=False)   # its responses, in prompt order
    length: float = float("nan")   # mean response length in tokens (EOS not counted): the best-known RLHF confound

    def to_dict(self) -> dict:
        """The row as a JSON-ready dict without the texts (what ``ARTIFACTS/evaluation/table.json`` holds)."""
        d = asdict(self)
        d.pop("texts")
        return d


def evaluation_table(policies: Mapping[str, PolicyLike], ref_model: PreTrainedModel,
                     tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], proxy_fn: RewardFn, *,
                     samples_per_prompt: int = 2, max_new_tokens: int = MAX_NEW_TOKENS, seed: int = 0,
                     gold_fn: RewardFn = gold_reward_fn, progress: bool = True) -> list[ReportRow]:
    """One :class:`ReportRow` per named policy, all on the same prompts with the same seeds.

    Every policy answers each prompt ``samples_per_prompt`` times (generator seeded with ``seed``); the
    reference (``ref_model``) answers the same list once more with ``seed + 1``, and each response is judged by gold
    against the reference's response to the same prompt (win rate, ties split). KL is the Monte-Carlo
    mean of log pi(y|x) - log pi_ref(y|x) on the policy's own samples; for :class:`BestOfN` it is the closed
    form log n - (n-1)/n (the base must be ``ref_model``). Policies share ``tokenizer`` (they are tuned
    copies of one model). Shapes: every policy gives B = len(prompts) * samples_per_prompt responses.
    """
    from tqdm.auto import tqdm

    if not policies:
        raise ValueError("evaluation_table needs at least one policy")
    if samples_per_prompt < 1 or not prompts:
        raise ValueError(f"need at least one prompt and samples_per_prompt >= 1, got {len(prompts)} prompts and "
                         f"samples_per_prompt={samples_per_prompt}")
    batch = [p for p in prompts for _ in range(samples_per_prompt)]
    ref_gold = torch.as_tensor(gold_fn(batch, _sample(ref_model, tokenizer, batch, max_new_tokens, seed + 1).texts))
    rows = []
    for name, policy in tqdm(policies.items(), desc="evaluating", disable=not progress):
        if isinstance(policy, BestOfN):
            if policy.base is not ref_model:
                raise ValueError(f"{name}: best-of-n's KL is known only against its own base; pass the reference "
                                 "as BestOfN(base=reference, n=...)")
            texts = _best_of_n_texts(policy, tokenizer, prompts, samples_per_prompt, proxy_fn, gold_fn,
                                     max_new_tokens, seed)
            kl = best_of_n_kl(policy.n)
        else:
            samples = _sample(policy, tokenizer, batch, max_new_tokens, seed)
            texts, kl = samples.texts, _kl_per_response(samples, ref_model).mean().item()
        gold = torch.as_tensor(gold_fn(batch, texts), dtype=torch.float32)
        proxy = torch.as_tensor(proxy_fn(batch, texts), dtype=torch.float32)
        length = sum(len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]) / len(texts)
        rows.append(ReportRow(name, gold.mean().item(), proxy.mean().item(), kl, win_rate(gold, ref_gold),
                              distinct_n(texts, 2), len(texts), list(texts), length))
    return rows


def _best_of_n_texts(bon: BestOfN, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                     samples_per_prompt: int, proxy_fn: RewardFn, gold_fn: RewardFn, max_new_tokens: int,
                     seed: int) -> list[str]:
    """Best-of-n responses in the table's prompt-major order: from ``bon.pool`` if given, else newly drawn."""
    if bon.pool is None:
        batch = [p for p in prompts for _ in range(samples_per_prompt)]
        return best_of_n_pool(bon.base, tokenizer, batch, bon.n, proxy_fn, gold_fn, max_new_tokens, seed).picks(bon.n)
    if bon.pool.prompts != [world.prompt_text(p) for p in prompts]:
        raise ValueError("BestOfN.pool was drawn on other prompts than the table's: draw it on the same list")
    if bon.n * samples_per_prompt > bon.pool.n_max:
        raise ValueError(f"best-of-{bon.n} x {samples_per_prompt} samples per prompt needs "
                         f"{bon.n * samples_per_prompt} pool samples per prompt, the pool has {bon.pool.n_max}")
    blocks = [bon.pool.picks(bon.n, block=j) for j in range(samples_per_prompt)]
    return [blocks[j][i] for i in range(len(prompts)) for j in range(samples_per_prompt)]


def load_trained_policies(names: Mapping[str, str] | Sequence[str] = TRAINED_POLICIES,
                          folder: str | Path | None = None) -> tuple[dict[str, PreTrainedModel], dict[str, str]]:
    """Load the saved policies of notebooks 05-07: ``(policies, missing)``.

    ``policies`` maps each name found in ``folder / name`` (default ``ARTIFACTS / "policies"``) to its model
    (frozen, eval mode); ``missing`` maps each absent name to the notebook that makes it.
    """
    from rlhf_lab.models import freeze, load_policy

    folder = Path(folder) if folder is not None else policies_folder()
    found, missing = {}, {}
    for name in names:
        path = folder / name
        if (path / "config.json").exists():
            found[name] = freeze(load_policy(path)[0])
        else:
            made_by = TRAINED_POLICIES.get(name)
            missing[name] = f"notebook {made_by}" if made_by else "no notebook of the course"
    return found, missing


def save_table(rows: Sequence[ReportRow], path: str | Path) -> Path:
    """Write the rows (without texts) as a JSON list of dicts; returns the path (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.to_dict() for r in rows], indent=1) + "\n", encoding="utf-8")
    return path


def format_table(rows: Sequence[ReportRow]) -> str:
    """The rows as a fixed-width text table."""
    head = f"{'policy':<14}{'gold':>7}{'proxy':>7}{'KL (nats)':>10}{'win rate':>9}{'distinct-2':>11}{'length':>7}{'n':>5}"
    lines = [head, "-" * len(head)]
    for r in rows:
        kl = 0.0 if abs(r.kl) < 5e-3 else r.kl   # no "-0.00" for a policy against itself
        lines.append(f"{r.policy:<14}{r.gold_reward:>+7.2f}{r.proxy_reward:>+7.2f}{kl:>10.2f}{r.win_rate:>9.0%}"
                     f"{r.distinct_2:>11.2f}{r.length:>7.1f}{r.n:>5d}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- blind hand evaluation
@dataclass
class BlindPairs:
    """Two policies' responses to the same prompts, each pair with its sides shuffled.

    ``pairs`` is all a rater may see: ``(prompt, first shown, second shown)``. Which side is which policy
    (the key) stays in this object, out of the pairs and out of ``repr``; only :func:`unblind` reads it.
    """
    pairs: list[tuple[str, str, str]]   # (prompt, response shown as A, response shown as B)
    name_a: str                         # the policy whose win rate unblind reports
    name_b: str                         # the policy it is compared with
    _a_first: list[bool] = field(repr=False)   # the key: True where policy A's response is shown as A

    def __len__(self) -> int:
        return len(self.pairs)


def blind_pairs(prompts: Sequence[str], texts_a: Sequence[str], texts_b: Sequence[str], seed: int,
                name_a: str = "A", name_b: str = "B") -> BlindPairs:
    """Pair policy A's and policy B's response to each prompt, the order of each pair drawn by
    ``random.Random(seed)`` (a fair coin per pair), so neither position nor origin can be guessed."""
    prompts, texts_a, texts_b = list(prompts), list(texts_a), list(texts_b)
    if not (len(prompts) == len(texts_a) == len(texts_b)) or not prompts:
        raise ValueError(f"need one response of each policy per prompt, got {len(prompts)} prompts, "
                         f"{len(texts_a)} responses of {name_a} and {len(texts_b)} of {name_b}")
    rng = random.Random(seed)
    a_first = [rng.random() < 0.5 for _ in prompts]
    pairs = [(world.prompt_text(p), a, b) if first else (world.prompt_text(p), b, a)
             for p, a, b, first in zip(prompts, texts_a, texts_b, a_first)]
    return BlindPairs(pairs, name_a, name_b, a_first)


def _pair_key(prompt: str, x: str, y: str) -> tuple:
    """A rated pair's identity: prompt and the set of its two texts (order on screen ignored), as the widget's."""
    return (prompt, frozenset((x, y)))


@dataclass
class BlindResult:
    """A blind evaluation, unblinded: how often policy A won."""
    name_a: str         # policy A
    name_b: str         # policy B
    wins_a: int         # pairs where the rater chose A's response
    wins_b: int         # pairs where the rater chose B's response
    ties: int           # pairs rated a tie (or whose two responses are the same text)
    unrated: int        # pairs skipped or not rated yet (left out of the win rate)

    @property
    def rated(self) -> int:
        return self.wins_a + self.wins_b + self.ties

    @property
    def win_rate(self) -> float:
        """(wins of A + ties / 2) / rated pairs; NaN while nothing is rated."""
        return (self.wins_a + 0.5 * self.ties) / self.rated if self.rated else float("nan")


def unblind(blind: BlindPairs, records, rater: str) -> BlindResult:
    """Read ``rater``'s ratings of the blind pairs back (the latest record per pair counts) and count A's wins.

    ``records``: ``PreferenceRecord``s, e.g. ``store.records()``. Records of other raters and of other pairs
    are ignored; skipped pairs have no record and count as unrated. A record names the chosen *text*, so the
    side it was shown on does not matter.
    """
    latest = {_pair_key(r.prompt, r.chosen, r.rejected): r for r in records if r.rater == rater}
    wins_a = wins_b = ties = unrated = 0
    for (prompt, first, second), a_first in zip(blind.pairs, blind._a_first):
        record = latest.get(_pair_key(prompt, first, second))
        text_a = first if a_first else second
        if record is None:
            unrated += 1
        elif record.tie or first == second:
            ties += 1
        elif record.chosen == text_a:
            wins_a += 1
        else:
            wins_b += 1
    return BlindResult(blind.name_a, blind.name_b, wins_a, wins_b, ties, unrated)
