"""Synthetic market generation speed: one year (252 sessions) of NQ minute bars.

Prints the bar count and timings; the headline last as ``generate_bars_per_s=<n>``. ``--smoke`` runs 5 sessions
once (the CI check that the bench still runs; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from tradelab.config import load_config
from tradelab.marketdata import generate_market
from tradelab.marketdata.synth import synthesize_bars
from tradelab.markets import contract_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    days, repeats = (5, 1) if args.smoke else (252, 5)
    config = load_config()
    spec = contract_spec(config, "NQ")
    best_s = float("inf")
    rows = 0
    for _ in range(repeats):
        started = time.perf_counter()
        bars, _regime_counts = synthesize_bars(spec, "NQ", days=days, seed=7)
        best_s = min(best_s, time.perf_counter() - started)
        rows = len(bars)
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        generate_market(root, "NQ", config, days=days, seed=7)
        with_io_s = time.perf_counter() - started
    print(f"bars={rows}")
    print(f"synthesize_best_s={best_s:.3f}")
    print(f"generate_market_with_parquet_s={with_io_s:.3f}")
    print(f"generate_bars_per_s={rows / best_s:.0f}")


if __name__ == "__main__":
    main()
