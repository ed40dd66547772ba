"""Run a study file: the same arguments as ``tft-hpo run`` (for users who prefer a script)."""

from __future__ import annotations

import sys

from tft_hpo.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
