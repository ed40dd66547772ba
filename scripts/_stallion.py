"""The Stallion data for the benchmark scripts: $TFT_HPO_STALLION, else ../shared/data/stallion.parquet."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tft_hpo.data import STALLION_ENV

ROOT = Path(__file__).resolve().parents[1]


def stallion_path() -> Path:
    """Where the Stallion parquet file is; exits with one line when it is not there."""
    path = Path(os.environ.get(STALLION_ENV, ROOT.parent / "shared" / "data" / "stallion.parquet"))
    if not path.is_file():
        sys.exit(f"bench: no Stallion data at {path} (set {STALLION_ENV})")
    return path
