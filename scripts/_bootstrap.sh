# Sourced by scripts/serve and scripts/test: creates .venv if missing and (re)installs the
# package when setup.cfg changed, so both commands work on a fresh machine.
# Usage: EXTRAS="test" source scripts/_bootstrap.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python_bin="${TWIN_PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin="$candidate"; break; fi
  done
fi
if [ -z "$python_bin" ]; then echo "error: python3.11 not found on PATH" >&2; exit 1; fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $python_bin" >&2
  "$python_bin" -m venv .venv
fi
spec=".[${EXTRAS:-}]"
[ -z "${EXTRAS:-}" ] && spec="."
stamp=".venv/.installed-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)-${EXTRAS:-none}"
if [ ! -f "$stamp" ]; then
  echo "installing learner-twin ${EXTRAS:+with extras $EXTRAS} into .venv" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" >&2
  touch "$stamp"
fi
