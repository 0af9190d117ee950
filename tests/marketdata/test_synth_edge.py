"""The planted edge: point-in-time by construction, tunable, recorded, and absent at strength 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tradelab import stages
from tradelab.config import TradelabConfig
from tradelab.errors import DataError
from tradelab.marketdata.synth import EDGE_LOOKBACK_BARS, GENERATOR_VERSION, _plant_momentum, synthesize_bars
from tradelab.markets import contract_spec


def _inputs(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.5, 1.5, n) * 1e-3
    return rng.normal(0.0, 1.0, n) * sigma, sigma, np.array([0, 200])


def test_drift_follows_the_five_bar_cue_known_at_the_previous_close() -> None:
    log_ret, sigma, first = _inputs()
    out = _plant_momentum(log_ret, sigma, first, 0.4)
    price = np.cumsum(out)
    for t in range(EDGE_LOOKBACK_BARS + 1, len(out)):
        expected = 0.0
        if t not in first:
            cue = price[t - 1] - price[t - 1 - EDGE_LOOKBACK_BARS]
            expected = 0.4 * sigma[t] * np.sign(cue)
        assert out[t] - log_ret[t] == pytest.approx(expected, abs=1e-15)


def test_no_look_ahead_changing_later_shocks_leaves_earlier_bars_alone() -> None:
    log_ret, sigma, first = _inputs()
    out = _plant_momentum(log_ret, sigma, first, 0.4)
    changed = log_ret.copy()
    changed[250:] = -changed[250:] * 3.0
    np.testing.assert_array_equal(_plant_momentum(changed, sigma, first, 0.4)[:250], out[:250])


def test_edge_zero_is_the_null_market_and_edges_share_the_random_draws(config: TradelabConfig) -> None:
    spec = contract_spec(config, "NQ")
    null, regimes = synthesize_bars(spec, "NQ", days=3, seed=11)
    zero, regimes_zero = synthesize_bars(spec, "NQ", days=3, seed=11, edge=0.0)
    edged, regimes_edged = synthesize_bars(spec, "NQ", days=3, seed=11, edge=0.5)
    assert null.equals(zero) and regimes == regimes_zero == regimes_edged
    assert not null["close"].equals(edged["close"])
    # The first bars of the first session come before any cue exists: identical.
    np.testing.assert_array_equal(null["close"].to_numpy()[:EDGE_LOOKBACK_BARS + 1],
                                  edged["close"].to_numpy()[:EDGE_LOOKBACK_BARS + 1])


def test_strength_and_version_are_recorded_and_bounded(tmp_path: Path, config: TradelabConfig) -> None:
    report = stages.generate_data(tmp_path, "NQ", days=5, seed=3, edge=0.25, config=config)
    saved = json.loads((tmp_path / "data" / "NQ" / "data_report.json").read_text())
    for source in (report["source"], saved["source"]):
        assert source["edge"] == 0.25 and source["generator_version"] == GENERATOR_VERSION
    from tradelab.marketdata.store import list_markets, market_origin

    assert market_origin(tmp_path, "NQ") == {"kind": "synthetic", "generator_version": GENERATOR_VERSION,
                                             "edge": 0.25, "seed": 3, "session": "rth"}
    assert list_markets(tmp_path)[0]["source"] == "synthetic edge=0.25"
    with pytest.raises(DataError, match="--edge 1.5"):
        stages.generate_data(tmp_path, "NQ", days=5, seed=3, edge=1.5, config=config)


@pytest.mark.slow
def test_the_simple_rule_earns_on_the_edge_and_nothing_on_the_null_market(tmp_path: Path,
                                                                        config: TradelabConfig) -> None:
    """Following the 5-bar return wins after costs on a strong edge; on the null market its interval holds 0."""
    from tradelab.core.reward import compute_score
    from tradelab.evaluation.starts import Window
    from tradelab.loop.probe import build_probe_set, day_bootstrap_ci, momentum_rule_answers
    from tradelab.marketdata import load_market_arrays

    intervals = {}
    for edge in (0.0, 0.5):
        root = tmp_path / f"edge{edge}"
        stages.generate_data(root, "NQ", days=60, seed=7, edge=edge, config=config)
        arrays = load_market_arrays(root, "NQ", config)
        probe = build_probe_set(root, "NQ", config, arrays, Window(0, int(arrays.split_index), len(arrays)),
                                n_prompts=200, seed=1)
        r = [compute_score("tradelab/NQ", a, t)["outcome_r"]
             for a, t in zip(momentum_rule_answers(probe), probe.ground_truths)]
        intervals[edge] = day_bootstrap_ci(np.asarray(r), probe.session_ids, seed=0)
    assert intervals[0.5][0] > 0.0
    assert intervals[0.0][0] <= 0.0 <= intervals[0.0][1]


def test_probe_prompts_score_with_the_configured_reward_spec(tmp_path: Path) -> None:
    """The loop's holdout probe scores with the same weights and blocklist Stage 2's dataset carries."""
    import json

    from tradelab.config import load_config
    from tradelab.core.reward import compute_score
    from tradelab.evaluation.starts import Window
    from tradelab.loop.probe import build_probe_set
    from tradelab.marketdata import load_market_arrays

    config = load_config(overrides={"soft_grpo.dataset.reward_weights.invalid_score": -2.5,
                                    "soft_grpo.dataset.blocklist": ["guaranteed"]})
    stages.generate_data(tmp_path, "NQ", days=10, seed=7, edge=0.5, config=config)
    arrays = load_market_arrays(tmp_path, "NQ", config)
    probe = build_probe_set(tmp_path, "NQ", config, arrays, Window(0, int(arrays.split_index), len(arrays)),
                            n_prompts=4, seed=1)
    truth = probe.ground_truths[0]
    spec = json.loads(truth)["reward_spec"]
    assert spec["weights"]["invalid_score"] == -2.5 and spec["blocklist"] == ["guaranteed"]
    assert compute_score("tradelab/NQ", "no answer here", truth)["score"] == -2.5
    assert compute_score("tradelab/NQ", "BUY | 0.7 | guaranteed win", truth)["score"] == -2.5
