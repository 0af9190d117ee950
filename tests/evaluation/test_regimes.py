"""Point-in-time regime classifier, its agreement score, the P&L breakdown and the generator's labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tradelab.config import TradelabConfig
from tradelab.evaluation.regimes import (
    REGIME_NAMES,
    WARMUP,
    agreement,
    classify_regimes,
    regime_breakdown,
    synthetic_regimes,
)
from tradelab.paths import Workspace

BARS_PER_SESSION = 200


def _market(segments: list[tuple[float, float]], sessions_before: int = 4, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closes of ``sessions_before`` ordinary sessions, then one session per ``(vol multiple, drift per bar)``."""
    rng = np.random.default_rng(seed)
    specs = [(1.0, 0.0)] * sessions_before + segments
    log_ret = np.concatenate([rng.normal(drift, 1e-3 * vol, BARS_PER_SESSION) for vol, drift in specs])
    close = 1000.0 * np.exp(np.cumsum(log_ret))
    session = np.repeat(np.arange(len(specs)), BARS_PER_SESSION)
    minute = np.tile(570 + np.arange(BARS_PER_SESSION), len(specs))
    return close, session, minute


def _share(labels: np.ndarray, name: str) -> float:
    return float(np.mean(labels == REGIME_NAMES.index(name)))


def test_hand_built_sessions_get_their_regime() -> None:
    close, session, minute = _market([(0.4, 0.0), (1.1, 4e-4), (1.1, -4e-4), (3.0, 0.0)])
    labels = classify_regimes(close, session, minute)
    assert np.all(labels[:BARS_PER_SESSION] == WARMUP)  # no earlier session: no intraday profile yet
    tail = BARS_PER_SESSION // 2  # the second half of each session, once the EWMA has caught up
    calm, up, down, volatile = (labels[(4 + k) * BARS_PER_SESSION + tail:(5 + k) * BARS_PER_SESSION]
                                for k in range(4))
    assert _share(calm, "calm") > 0.9
    assert _share(volatile, "volatile") > 0.9
    assert _share(up, "trend_up") > 0.8
    assert _share(down, "trend_down") > 0.8


def test_labels_use_only_bars_up_to_t() -> None:
    close, session, minute = _market([(1.0, 0.0), (1.0, 0.0)])
    labels = classify_regimes(close, session, minute)
    t = 5 * BARS_PER_SESSION + 37
    changed = close.copy()
    changed[t + 1:] *= np.exp(np.cumsum(np.random.default_rng(9).normal(0, 5e-3, close.size - t - 1)))
    assert np.array_equal(classify_regimes(changed, session, minute)[: t + 1], labels[: t + 1])


def test_agreement_counts_by_hand() -> None:
    truth = np.array([0, 0, 1, 2, 3, 3, 1])
    predicted = np.array([WARMUP, 0, 1, 1, 3, 0, 1])
    out = agreement(predicted, truth)
    assert out["bars"] == 6 and out["accuracy"] == pytest.approx(4 / 6)
    assert out["confusion"] == [[1, 0, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [1, 0, 0, 1]]
    # Cohen's kappa: observed 4/6; expected sum(row x column marginals) / 36 = (1*2 + 2*3 + 1*0 + 2*1) / 36.
    expected = (2 + 6 + 0 + 2) / 36
    assert out["cohen_kappa"] == pytest.approx((4 / 6 - expected) / (1 - expected))


def test_breakdown_uses_the_decision_bar() -> None:
    labels = np.array([0, 0, 3, 3, 1, 1])
    trades = [
        {"agent": "x", "entry_bar": 3, "pnl_usd": 40.0, "r_multiple": 1.0},  # decided at bar 2: volatile
        {"agent": "x", "entry_bar": 1, "pnl_usd": -20.0, "r_multiple": -0.5},  # bar 0: calm
        {"agent": "x", "entry_bar": 5, "pnl_usd": 10.0, "r_multiple": 0.25},  # bar 4: trend_up
        {"agent": "y", "entry_bar": 5, "pnl_usd": 99.0, "r_multiple": 2.0},
    ]
    out = regime_breakdown(trades, labels, ["x", "z"], seeds=2)
    assert out["x"]["volatile"] == {"trades": 1, "net_pnl_usd": 20.0, "wins": 1, "mean_r": 1.0}
    assert out["x"]["calm"]["net_pnl_usd"] == -10.0 and out["x"]["trend_up"]["trades"] == 1
    assert out["x"]["trend_down"] == {"trades": 0, "net_pnl_usd": 0.0, "wins": 0, "mean_r": None}
    assert all(row["trades"] == 0 for row in out["z"].values())


def test_generator_labels_match_its_recorded_counts(nq_workspace: Path, config: TradelabConfig,
                                                    tmp_path: Path) -> None:
    from tradelab.marketdata import load_market_arrays

    n = len(load_market_arrays(nq_workspace, "NQ", config))
    labels = synthetic_regimes(nq_workspace, "NQ", config, n)
    assert labels is not None and labels.size == n
    report = json.loads(Workspace.at(nq_workspace).data_report_path("NQ").read_text())
    assert dict(zip(REGIME_NAMES, np.bincount(labels, minlength=4).tolist())) == report["source"]["regime_bars"]
    # Another seed in the report: the rebuilt chain no longer matches the recorded counts, so no ground truth.
    shutil.copytree(Workspace.at(nq_workspace).data_dir("NQ"), Workspace.at(tmp_path).data_dir("NQ"))
    path = Workspace.at(tmp_path).data_report_path("NQ")
    path.write_text(json.dumps({**report, "source": {**report["source"], "seed": report["source"]["seed"] + 1}}))
    assert synthetic_regimes(tmp_path, "NQ", config, n) is None
    assert synthetic_regimes(tmp_path, "NQ", config, n + 1) is None
