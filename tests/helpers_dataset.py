"""Helpers for tests that read the literature dataset (skipped where it is absent)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASET_DIR = Path(os.environ.get("SCREENER_DATASET", REPO.parent / "shared" / "data" / "em-dataset"))


@lru_cache(maxsize=1)
def _records() -> list[dict]:
    return json.loads((DATASET_DIR / "train_bands.json").read_text())


def dataset_records(n: int | None = None) -> list[dict]:
    """The first ``n`` records of the training dataset, or skip the test."""
    if not (DATASET_DIR / "train_bands.json").exists():
        pytest.skip(f"dataset not found at {DATASET_DIR}")
    recs = _records()
    return [dict(r) for r in (recs if n is None else recs[:n])]
