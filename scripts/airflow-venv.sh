#!/usr/bin/env bash
# Creates (once) a virtualenv with a pinned Airflow, for the tests that read
# our encodings with real Airflow and for the shim tests.
#   scripts/airflow-venv.sh [MAJOR]   # MAJOR 3 (default) or 2; prints the venv path
# The pins live in tests/airflow/requirements-MAJOR.txt (Airflow's constraint
# files can't be fetched here); the venv is rebuilt when that file changes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
major=${1:-3}
requirements="$root/tests/airflow/requirements-$major.txt"
venv="$root/tools/airflow-$major"
stamp="$venv/.requirements.sha256"

if [ ! -f "$requirements" ]; then
  echo "airflow-venv: no $requirements" >&2
  exit 1
fi
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ -x "$venv/bin/airflow" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "airflow-venv: $venv is up to date" >&2
else
  echo "airflow-venv: building $venv from $(basename "$requirements") (2 to 3 minutes)" >&2
  started=$(date +%s)
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$requirements" >&2
  echo "$want" >"$stamp"
  echo "airflow-venv: built in $(( $(date +%s) - started ))s" >&2
fi
echo "$venv"
