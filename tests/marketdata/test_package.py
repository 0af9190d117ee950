"""``import tradelab.marketdata`` stays light: pandas, pyarrow and ta load only when a function needs them."""

from __future__ import annotations

import subprocess
import sys


def test_package_import_is_light() -> None:
    code = (
        "import sys, tradelab.marketdata as m; "
        "heavy = [n for n in ('pandas', 'pyarrow', 'ta', 'torch') if n in sys.modules]; "
        "assert not heavy, heavy; "
        "assert callable(m.load_market_arrays) and callable(m.generate_market)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
