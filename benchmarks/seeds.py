"""What the benchmarks that run a notebook under several seeds share: the mean ± sd cell of their tables."""
from __future__ import annotations

import statistics


def mean_sd(values: list[float], fmt: str) -> str:
    """``mean ± sd`` of ``values`` with the format spec ``fmt`` (the sd without a sign); one value: just it."""
    if len(values) < 2:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt.lstrip('+'))}"
