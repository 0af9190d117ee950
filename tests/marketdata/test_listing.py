"""`data list`: a stray folder or a misshapen data_report.json never fails the whole listing."""

from __future__ import annotations

from pathlib import Path


def test_listing_skips_stray_folders_and_misshapen_reports(tmp_path: Path, config) -> None:
    import json
    import shutil

    from tradelab.marketdata import generate_market
    from tradelab.marketdata.store import list_markets
    from tradelab.paths import Workspace

    generate_market(tmp_path, "NQ", config, days=2, seed=1)
    ws = Workspace.at(tmp_path)
    (tmp_path / "data" / "nq").mkdir()
    shutil.copyfile(ws.bars_path("NQ"), tmp_path / "data" / "nq" / "bars_1m.parquet")
    ws.data_report_path("NQ").write_text(json.dumps({"source": "synthetic", "rows": "many"}))
    rows = list_markets(tmp_path)
    assert [r["market"] for r in rows] == ["NQ"] and rows[0]["rows"] == 780 and rows[0]["source"] == "unknown"
    assert ws.stray_data_dirs() == [tmp_path.resolve() / "data" / "nq"]
