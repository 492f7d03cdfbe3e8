#!/usr/bin/env bash
# Runs every notebook of Flake in order with papermill and params/<profile>.yaml.
#
#   ./run_all.sh [--profile smoke|quick|paper] [--only NN[,NN...]] [--mirror DIR]
#
# Executed notebooks go to results/<profile>/executed/, metrics and figures to results/<profile>/.
# --mirror (or FLAKE_DATA_MIRROR) names an optional local data mirror laid out like shared/data.
# Creates the virtual environment (.venv) on first use. `./run_all.sh --help` lists every option.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/ensure_env.sh
ensure_env
exec "$FLAKE_VENV/bin/python" -m flake_lib.chain "$@"
