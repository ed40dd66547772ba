#!/usr/bin/env bash
# Set up (first run only) and run the quickstart study: a generated demand panel, offline, on the CPU.
# Extra arguments go to `tft-hpo run` (e.g. --n-trials 20).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec tft-hpo run studies/quickstart.toml "$@"
