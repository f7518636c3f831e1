"""``benchmarks/gpu.py`` runs unchanged on a CPU (smoke sizes) and reports what a GPU run will."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_smoke_runs_on_a_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--smoke", "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line == json.loads(out.read_text())
    fast = line["fast_model"]
    assert line["device"] == "cpu" and fast["bands"] == 4 and fast["bands_per_s_one"] > 0 and fast["bands_per_s_batched"] > 0
    for name in ("chgnet", "7net-0"):  # each potential measured, or skipped with the reason
        got = line["umlip"][name]
        assert "skipped" in got or (got["images_per_s_batched"] > 0 and 1 <= got["images"] <= 2)
        # energies with forces of a ~220-site image take real memory: the batch is sized on it
        assert "skipped" in got or got["mib_per_image"] > 50
    assert line["peak_rss_mib"] > 0 and line["peak_gpu_mib"] is None
