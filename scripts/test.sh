#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite, slow end-to-end tests included.
# Extra arguments go to pytest (e.g. -m "not slow", -k resume).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec python -m pytest "$@"
