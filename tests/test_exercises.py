"""Exercise checks reject wrong and unrun answers and accept right ones.

Each test takes an exercise's answer cell from the course notebook itself, fills in the learner's lines
(``my_x = ...``) with a wrong, a missing or a right answer, runs it in a namespace holding what the
notebook has defined by then (real objects, or small stand-ins for the results of long runs), and reads
the check's verdict lines ("[x]" right, "[ ]" not) from what it prints.
"""
from __future__ import annotations

import contextlib
import io
import json
import re

import torch

from rlhf_lab import bandit, course
from rlhf_lab.checks import check

NOTEBOOKS = course.NOTEBOOKS


def _cell(notebook: str, needle: str) -> str:
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    hits = ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and needle in "".join(c["source"])]
    assert len(hits) == 1, f"{notebook}: {len(hits)} code cells contain {needle!r}"
    return hits[0]


def _run(source: str, answers: dict[str, str], env: dict) -> list[bool]:
    """Fill in ``answers`` (name -> Python source) and run the cell; return each check's verdict."""
    for name, value in answers.items():
        pattern = rf"^{name} = \.\.\.(.*)$"
        assert re.search(pattern, source, flags=re.M), f"no line '{name} = ...' in the cell"
        source = re.sub(pattern, lambda m: f"{name} = {value}", source, flags=re.M)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<exercise>", "exec"), {"check": check, **env})
    verdicts = [line.startswith("[x]") for line in out.getvalue().splitlines() if line.startswith("[")]
    assert verdicts, f"the cell printed no verdict:\n{out.getvalue()}"
    return verdicts


def test_01_ex3_needs_the_trained_probability():
    cell = _cell("01_reward_as_a_signal.ipynb", "my_prob = ...")
    env = {"bandit": bandit, "config": bandit.ReinforceConfig(seed=0), "REWARDS": bandit.REWARDS, "REPLIES": bandit.REPLIES}
    rewards = '{**REWARDS, "Interesting thought.": 12}'
    right = f'float(bandit.reinforce(config, rewards={rewards}).probs[-1][REPLIES.index("Interesting thought.")])'
    assert all(_run(cell, {"my_rewards": rewards, "my_prob": right}, env))
    assert not all(_run(cell, {"my_rewards": rewards, "my_prob": "1.0"}, env))          # "it must reach 1"
    assert not all(_run(cell, {"my_rewards": '{**REWARDS, "Great idea!": 100}', "my_prob": right}, env))
    assert not any(_run(cell, {}, env))                                                # unanswered


def test_03_ex3_needs_the_measured_ratio():
    from rlhf_lab import linear_reward, world

    cell = _cell("03_reward_models.ipynb", "my_ratio = ...")
    train_prompts, _ = world.split_prompts(world.load_prompts())
    env = {"linear_reward": linear_reward, "world": world, "seed": 0, "train_prompts": train_prompts}
    sharp, _ = linear_reward.train_linear_reward_model(world.simulate_preferences(2000, 0.5, 0, prompts=train_prompts))
    plain, _ = linear_reward.train_linear_reward_model(world.simulate_preferences(2000, 1.0, 0, prompts=train_prompts))
    measured = sharp.weights()["names the topic"] / plain.weights()["names the topic"]
    assert all(_run(cell, {"my_ratio": repr(measured)}, env))
    assert not any(_run(cell, {"my_ratio": repr(measured + 0.1)}, env))
    assert any(_run(cell, {"my_ratio": "2.0"}, env)) == (abs(measured - 2.0) <= 0.01 + 1e-4 * 2.0)
    assert not any(_run(cell, {}, env))


def test_04_ex3_and_05_ex2():
    from rlhf_lab import evaluation
    from rlhf_lab import policy_gradient as pg

    cell = _cell("04_the_policy.ipynb", "my_n = ...")
    assert all(_run(cell, {"my_n": "54"}, {"evaluation": evaluation}))
    assert not any(_run(cell, {"my_n": "53"}, {"evaluation": evaluation}))
    assert not any(_run(cell, {}, {"evaluation": evaluation}))

    cell = _cell("05_policy_gradient.ipynb", "def my_returns(")
    right = "def my_returns(scores, logprobs, ref_logprobs, mask, beta):\n    return scores - beta * ((logprobs - ref_logprobs) * mask).sum(1)\n"
    unmasked = "def my_returns(scores, logprobs, ref_logprobs, mask, beta):\n    return scores - beta * (logprobs - ref_logprobs).sum(1)\n"
    body = cell.split("\n\n", 1)[1]                     # the cell without its function stub
    env = {"torch": torch, "pg": pg}
    assert all(_run(right + body, {}, env))
    assert not any(_run(unmasked + body, {}, env))     # padding counted: wrong
    assert not any(_run(cell, {}, env))                # the unanswered stub returns None: "not answered yet"


def test_05_ex4_checks_against_the_logs():
    cell = _cell("05_policy_gradient.ipynb", "my_kl_strong = ...")
    logs = {"rloo_log": [{"kl": 2.0}], "strong_log": [{"kl": 0.8}]}
    assert all(_run(cell, {"my_kl_default": "2.0", "my_kl_strong": "0.8", "my_answer": "True"}, logs))
    assert not all(_run(cell, {"my_kl_default": "2.0", "my_kl_strong": "100", "my_answer": "False"}, logs))
    assert not all(_run(cell, {"my_kl_default": "2.0", "my_kl_strong": "0.8", "my_answer": "False"}, logs))
    unrun = {"rloo_log": logs["rloo_log"]}              # the beta = 0.5 run was never made
    assert _run(cell, {"my_kl_default": "2.0", "my_kl_strong": "0.5", "my_answer": "True"}, unrun) == [True, False]


def test_07_ex4_measures_the_policy_it_is_given():
    cell = _cell("07_dpo.ipynb", "my_large_beta_policy = ...")

    class Evaluation:   # stand-in for rlhf_lab.evaluation: the KL of the policy passed
        @staticmethod
        def kl_to_reference(policy, *args, **kwargs):
            return policy["kl"]

    env = {"evaluation": Evaluation, "kl": 2.5, "beta": 0.25, "ref_model": None, "tokenizer": None, "test_texts": [],
           "samples_per_prompt": 8, "max_new_tokens": 56, "seed": 0}
    assert all(_run(cell, {"my_large_beta_policy": '{"kl": 1.0}', "my_answer": "True"}, env))
    assert not all(_run(cell, {"my_large_beta_policy": '{"kl": 1.0}', "my_answer": "False"}, env))
    assert not all(_run(cell, {"my_large_beta_policy": '{"kl": 0.0}', "my_answer": "True"}, env))   # untrained copy
    assert not any(_run(cell, {}, env))


def test_02_ex5_kappa_is_not_the_raw_agreement():
    from rlhf_lab import agreement

    cell = _cell("02_rating_by_hand.ipynb", "my_kappa = ...")
    env = {"agreement": agreement, "ana": ["A", "A", "B", "A", "B", "B", "A", "A", "B", "A"],
           "ben": ["A", "B", "B", "A", "B", "A", "A", "A", "B", "B"]}
    assert all(_run(cell, {"my_kappa": "(0.7 - 0.5) / (1 - 0.5)"}, env))
    assert not all(_run(cell, {"my_kappa": "0.7"}, env))            # the raw agreement rate
    assert not all(_run(cell, {"my_kappa": "(0.7 - 0.5)"}, env))    # forgot to divide by 1 - p_e
    assert not any(_run(cell, {}, env))                              # unanswered


def test_10_exercises_need_the_formula_the_binomial_and_the_temperature():
    import numpy as np

    from rlhf_lab import reward_data, world

    train_prompts, _ = world.split_prompts(world.load_prompts())
    pairs = world.make_pairs(train_prompts, 5, seed=1)
    cai = world.SimulatedRater(temperature=1.0, name="cai", length_bias=0.3)
    env = {"world": world, "np": np, "pairs": pairs, "panel": [None, None, cai]}
    cell = _cell("10_whose_preferences.ipynb", "my_p = ...")
    prompt, a, b = pairs[0]
    taste = "(world.gold_reward(prompt, reply_a) - world.gold_reward(prompt, reply_b))"
    length = "0.3 * (len(world.words(reply_a)) - len(world.words(reply_b)))"
    assert all(_run(cell, {"my_p": f"world.sigmoid({taste} + {length})"}, env))
    assert len(world.words(a)) != len(world.words(b))                     # so that forgetting the bias is wrong:
    assert not all(_run(cell, {"my_p": f"world.sigmoid({taste})"}, env))   # the unbiased rater's probability
    assert not any(_run(cell, {}, env))

    cell = _cell("10_whose_preferences.ipynb", "my_majority = ...")
    assert all(_run(cell, {"my_majority": "0.896"}, {}))
    assert not all(_run(cell, {"my_majority": "0.8"}, {}))                 # one rater's accuracy
    assert not all(_run(cell, {"my_majority": "0.8 ** 3"}, {}))            # only the unanimous votes
    assert not any(_run(cell, {}, {}))

    cell = _cell("10_whose_preferences.ipynb", "my_flip_rate = ...")
    records = reward_data.simulate_comparisons(train_prompts, 3, 6, rater=world.SimulatedRater(3.0))
    gaps = np.array([world.gold_reward(r.prompt, r.chosen) - world.gold_reward(r.prompt, r.rejected) for r in records])
    env = {"world": world, "np": np, "gaps": gaps}
    right = "float(np.mean([world.sigmoid(-abs(g) / 2.0) for g in gaps if g != 0]))"
    assert all(_run(cell, {"my_flip_rate": right}, env))
    assert not all(_run(cell, {"my_flip_rate": right.replace("2.0", "3.0")}, env))   # the notebook's T
    assert not all(_run(cell, {"my_flip_rate": "float(np.mean(gaps < 0))"}, env))     # the observed share
    assert not any(_run(cell, {}, env))


def _body(source: str, function: str, body: str) -> str:
    """``source`` with the ``...`` body of ``def function(...)`` replaced by ``body`` (one line)."""
    pattern = rf"(def {function}\([^)]*\):\n)    \.\.\..*$"
    assert re.search(pattern, source, flags=re.M), f"no '...' body of {function} in the cell"
    return re.sub(pattern, lambda m: m.group(1) + "    " + body, source, flags=re.M)


def test_11_exercises_need_the_loophole_the_binomial_and_the_flat_share():
    import math

    import numpy as np

    from rlhf_lab import evaluation, instructions as ins, world

    _, test_prompts = world.split_prompts(world.load_prompts())
    env = {"world": world, "ins": ins, "test_prompts": test_prompts}
    cell = _cell("11_rewards_you_can_check.ipynb", "loophole = ...")
    right = _body(cell, "my_sloppy_one_sentence", 'return reply.count(".") == 1')
    assert all(_run(right, {"loophole": '"Hi! Start small and build up slowly."'}, env))
    assert not all(_run(right, {"loophole": '"Start small and build up slowly."'}, env))      # a real one-sentence reply
    assert not all(_run(right, {"loophole": '"Hi! Great idea!"'}, env))                        # no period at all
    assert not all(_run(right, {"loophole": '"xyz."'}, env))                                   # not a clean reply
    strict = _body(cell, "my_sloppy_one_sentence", "return ins.CHECKERS['one_sentence'](reply)")  # not the sloppy one
    assert not all(_run(strict, {"loophole": '"Hi! Start small and build up slowly."'}, env))
    assert not any(_run(cell, {}, env))

    cell = _cell("11_rewards_you_can_check.ipynb", "def my_pass_at_k")
    env = {"math": math, "evaluation": evaluation}
    right = _body(cell, "my_pass_at_k", "return 1 - math.comb(n - c, k) / math.comb(n, k)")
    assert all(_run(right, {"my_pass_4": "my_pass_at_k(8, 2, 4)"}, env))
    assert not all(_run(right, {"my_pass_4": "1 - (1 - 2 / 8) ** 4"}, env))                     # with replacement
    assert not all(_run(_body(cell, "my_pass_at_k", "return 1 - (1 - c / n) ** k"), {"my_pass_4": "0.786"}, env))
    assert not all(_run(_body(cell, "my_pass_at_k", "return c / n"), {"my_pass_4": "0.786"}, env))   # pass@1 for every k
    assert not any(_run(cell, {}, env))

    cell = _cell("11_rewards_you_can_check.ipynb", "my_lowest_p = ...")
    env = {"np": np}
    right = _body(cell, "my_flat_share", "return p ** G + (1 - p) ** G")
    lowest = "float(next(p for p in grid if my_flat_share(p, 4) <= 0.2))"
    assert all(_run(right, {"my_lowest_p": lowest}, env))
    assert not all(_run(_body(cell, "my_flat_share", "return p ** G"), {"my_lowest_p": lowest}, env))   # all pass only
    assert not all(_run(right, {"my_lowest_p": "0.5"}, env))                                         # the least flat
    assert not all(_run(right, {"my_lowest_p": lowest.replace("0.2", "0.8")}, env))                  # 20 % informative
    assert not any(_run(cell, {}, env))
