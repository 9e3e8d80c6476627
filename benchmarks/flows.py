"""Flows on the exact ring: few-step error of every model, its training time, and the best
diffusion solver at the same NFE.

Per model on the rectified path (the exact velocity; trained flows after 0-3 reflow rounds;
MeanFlow): the sliced Wasserstein distance of its samples to exact samples of the mixture and
the mean L2 distance to the exact flow's ODE endpoint from the same noise, at 1, 2, 5 and 10
NFE (Euler steps; MeanFlow at the NFE it is evaluated at), and the seconds its training took
on this machine (read from the sweep cache when the notebook ran first). Then, at each NFE,
the best of notebook 01's diffusion solvers on its VP schedule, against its own exact ODE
solution. Empty cells: not measured there.

Run: python benchmarks/flows.py [--smoke]
"""

from __future__ import annotations

import argparse

from workbench.claims import readable
from workbench.flows.study import benchmark_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="notebook 06's SMOKE size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = benchmark_table(args.smoke, args.seed)
    print(table.to_string(na_rep="", float_format=readable))
    print("SW: sliced Wasserstein to exact samples; L2: mean distance to the exact ODE endpoint")


if __name__ == "__main__":
    main()
