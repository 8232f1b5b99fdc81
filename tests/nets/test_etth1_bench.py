from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_completes_and_writes_valid_json(ett_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "etth1.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "etth1.py"), "--quick", "--data", str(ett_csv),
         "--horizons", "24", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "MSE" in proc.stdout and "s/epoch" in proc.stdout  # the printed table
    figures = json.loads(out.read_text())
    assert set(figures) == {"patchtst", "nhits"}
    for by_horizon in figures.values():
        assert set(by_horizon) == {"24"}
        row = by_horizon["24"]
        assert set(row) == {"mse", "mae", "seconds_per_epoch"}
        assert 0 < row["mse"] < 5 and 0 < row["mae"] < 5 and row["seconds_per_epoch"] > 0


def test_missing_data_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "etth1.py"), "--quick", "--data", str(missing)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode != 0
    assert f"ETTh1 not found at {missing}" in proc.stderr
    assert "Traceback" not in proc.stderr
