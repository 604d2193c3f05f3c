"""Does a careful reader agree with the gold reward? A blind comparison of a tuned policy and the reference.

    python benchmarks/reader_agreement.py write [--policy rloo] [--pairs 100] [--out build/reader]
    python benchmarks/reader_agreement.py score build/reader/verdicts.jsonl [--out build/reader]

``write`` samples one reply from the tuned policy (``ARTIFACTS/policies/<policy>``, saved by notebook 05)
and one from the reference for each of ``--pairs`` held-out prompts (the test split, drawn with a fixed
seed), shuffles which side each policy is on, and writes two files:

* ``blind.jsonl``: ``{"id", "prompt", "A", "B"}`` a line. This is all the reader sees.
* ``key.json``: for each id, which side the tuned policy is on and the gold reward of each side.
  The reader never sees it.

The reader (a person, or a helper given only ``blind.jsonl`` and the instruction "pick the reply a careful
person would prefer; say tie only if you truly cannot choose") writes ``verdicts.jsonl``:
``{"id", "choice": "A" | "B" | "tie"}`` a line.

``score`` prints the reader's win rate for the tuned policy, gold's win rate on the same pairs (ties
split), and their agreement on the pairs where both prefer a side (issue #11: agreement >= 90 %,
reader win rate >= 80 %).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def write(policy_name: str, n_pairs: int, out: Path, seed: int) -> None:
    import torch

    from rlhf_lab import evaluation, world
    from rlhf_lab.generation import SampleConfig, sample
    from rlhf_lab.models import load_policy, load_reference

    folder = evaluation.policies_folder() / policy_name
    if not (folder / "config.json").exists():
        raise SystemExit(f"no tuned policy at {folder}: run notebook 05 first (python -m rlhf_lab.course run 05)")
    tuned, tokenizer = load_policy(folder)
    reference = load_reference()
    _, test = world.split_prompts(world.load_prompts())
    rng = random.Random(seed)
    prompts = [rng.choice(test) for _ in range(n_pairs)]
    texts = [p.text for p in prompts]
    config = SampleConfig()
    a = sample(tuned, tokenizer, texts, config, torch.Generator().manual_seed(seed))
    b = sample(reference, tokenizer, texts, config, torch.Generator().manual_seed(seed + 1))
    out.mkdir(parents=True, exist_ok=True)
    key = {}
    with open(out / "blind.jsonl", "w", encoding="utf-8") as f:
        for i, (p, ta, ea, tb, eb) in enumerate(zip(prompts, a.texts, a.ended.tolist(), b.texts, b.ended.tolist())):
            tuned_first = rng.random() < 0.5
            sides = (ta, tb) if tuned_first else (tb, ta)
            f.write(json.dumps({"id": i, "prompt": p.text, "A": sides[0], "B": sides[1]}) + "\n")
            key[i] = {"tuned": "A" if tuned_first else "B",
                      "gold_tuned": world.gold_reward(p, ta, ea), "gold_reference": world.gold_reward(p, tb, eb)}
    (out / "key.json").write_text(json.dumps({"policy": policy_name, "seed": seed, "pairs": key}, indent=1))
    print(f"wrote {out / 'blind.jsonl'} ({n_pairs} pairs; give the reader only this file) and {out / 'key.json'}")


def score(verdicts: Path, out: Path) -> dict:
    key = json.loads((out / "key.json").read_text())["pairs"]
    choices = {}
    for line_no, line in enumerate(verdicts.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        d = json.loads(line)
        if d.get("choice") not in ("A", "B", "tie") or str(d.get("id")) not in key:
            raise SystemExit(f"{verdicts}:{line_no}: expected {{'id': <an id of blind.jsonl>, 'choice': 'A'|'B'|'tie'}}")
        choices[str(d["id"])] = d["choice"]
    missing = sorted(set(key) - set(choices), key=int)
    if missing:
        raise SystemExit(f"{verdicts}: no verdict for ids {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    reader_wins = gold_wins = 0.0
    both, agree = 0, 0
    for i, k in key.items():
        c = choices[i]
        reader = 0.5 if c == "tie" else float(c == k["tuned"])
        diff = k["gold_tuned"] - k["gold_reference"]
        gold = 0.5 if diff == 0 else float(diff > 0)
        reader_wins += reader
        gold_wins += gold
        if reader != 0.5 and gold != 0.5:
            both += 1
            agree += reader == gold
    n = len(key)
    result = {"pairs": n, "reader_win_rate": reader_wins / n, "gold_win_rate": gold_wins / n,
              "both_prefer": both, "agreement": agree / max(both, 1),
              "reader_ties": sum(c == "tie" for c in choices.values())}
    print(f"{n} blind pairs (tuned policy vs reference, held-out prompts)\n"
          f"  reader's win rate for the tuned policy: {result['reader_win_rate']:.0%} "
          f"({result['reader_ties']} ties, split)\n"
          f"  gold's win rate on the same pairs:      {result['gold_win_rate']:.0%}\n"
          f"  agreement where both prefer a side:    {result['agreement']:.0%} of {both} pairs")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write the blind pairs and the key")
    w.add_argument("--policy", default="rloo", help="a policy saved under ARTIFACTS/policies (default: rloo, notebook 05)")
    w.add_argument("--pairs", type=int, default=100)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--out", type=Path, default=REPO / "build" / "reader")
    s = sub.add_parser("score", help="score a verdict file against the key")
    s.add_argument("verdicts", type=Path)
    s.add_argument("--out", type=Path, default=REPO / "build" / "reader")
    args = parser.parse_args()
    if args.command == "write":
        write(args.policy, args.pairs, args.out, args.seed)
    else:
        score(args.verdicts, args.out)


if __name__ == "__main__":
    main()
