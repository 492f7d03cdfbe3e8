#!/usr/bin/env bash
# Runs Flake's tests (unit tests and the notebook chain under the smoke profile).
#
#   ./run_tests.sh [pytest arguments...]
#
# Creates the virtual environment (.venv) on first use. The data mirror is taken from
# FLAKE_DATA_MIRROR, or ../shared/data when that folder exists; tests that need data skip without one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/ensure_env.sh
ensure_env
if [ -z "${FLAKE_DATA_MIRROR:-}" ] && [ -d ../shared/data ]; then
  export FLAKE_DATA_MIRROR="$(cd ../shared/data && pwd)"
fi
exec "$FLAKE_VENV/bin/python" -m pytest "$@"
