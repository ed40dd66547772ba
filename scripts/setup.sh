#!/usr/bin/env bash
# Sourced by quickstart.sh and test.sh: create .venv if missing and install tft-hpo with its
# dependencies. torch: `torch==2.13.0` (CPU build here) unless torch is already present in .venv or
# TFT_HPO_TORCH gives another pip requirement (e.g. TFT_HPO_TORCH="torch==2.14.1").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PYTHON" >&2
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.tft-hpo-installed
wanted="$(sha256sum pyproject.toml | cut -c1-16) ${TFT_HPO_TORCH:-}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing tft-hpo and its dependencies into .venv (once)" >&2
  python -m pip install -q --upgrade pip
  if [ -n "${TFT_HPO_TORCH:-}" ]; then
    # shellcheck disable=SC2086  # the variable may carry pip options as well as the requirement
    python -m pip install -q $TFT_HPO_TORCH
  elif ! python -c "import torch" 2>/dev/null; then
    python -m pip install -q "torch==2.13.0"
  fi
  python -m pip install -q -e ".[dev]"
  echo "$wanted" >"$stamp"
fi
