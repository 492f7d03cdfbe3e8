# shellcheck shell=bash
# Sourced by run_all.sh and run_tests.sh: creates or refreshes the project's virtual environment.
#
#   FLAKE_VENV    where the environment lives (default: <repo>/.venv)
#   FLAKE_PYTHON  the Python 3.11 interpreter used to create it (default: python3.11, then python3)
#
# The environment is rebuilt when it is missing or when pyproject.toml changed since it was filled
# (a stamp file holds the hash). It also registers the Jupyter kernel "flake" inside the environment.

flake_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FLAKE_VENV="${FLAKE_VENV:-$flake_root/.venv}"

_flake_pick_python() {
  local cand
  for cand in "${FLAKE_PYTHON:-}" python3.11 python3; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  return 1
}

ensure_env() {
  local want have py log
  want="$(cat "$flake_root/pyproject.toml" "$flake_root/scripts/ensure_env.sh" | sha256sum | cut -c1-16)"
  have="$(cat "$FLAKE_VENV/.flake-env-stamp" 2>/dev/null || true)"
  if [ -x "$FLAKE_VENV/bin/python" ] && [ "$want" = "$have" ]; then
    return 0
  fi
  if ! py="$(_flake_pick_python)"; then
    echo "error: Flake needs Python 3.11 (none found as python3.11 or python3); set FLAKE_PYTHON=/path/to/python3.11" >&2
    return 1
  fi
  log="$FLAKE_VENV.install.log"
  echo "==> Setting up the Flake environment in $FLAKE_VENV with $py (log: $log)" >&2
  echo "    first time only: installs the pinned packages of pyproject.toml, several minutes" >&2
  "$py" -m venv "$FLAKE_VENV" || { echo "error: could not create $FLAKE_VENV" >&2; return 1; }
  if ! "$FLAKE_VENV/bin/python" -m pip install --disable-pip-version-check -q -e "$flake_root[test]" >"$log" 2>&1; then
    grep -v '^WARNING: Location' "$log" | tail -n 20 >&2
    echo "error: installing the pinned packages failed; full log in $log" >&2
    return 1
  fi
  "$FLAKE_VENV/bin/python" -m ipykernel install --sys-prefix --name flake \
      --display-name "Python 3 (Flake)" >>"$log" 2>&1 ||
    { echo "error: could not register the Jupyter kernel 'flake' (see $log)" >&2; return 1; }
  echo "$want" > "$FLAKE_VENV/.flake-env-stamp"
  echo "==> Environment ready." >&2
}
