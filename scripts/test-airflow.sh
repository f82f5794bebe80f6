#!/usr/bin/env bash
# The Airflow shim's tests, end to end: real Airflow 2.10 and 3 (pinned venvs,
# cached under tools/), the shim built from shim/airflow with stubs generated
# from proto/, a real `switchboard dev`, and a smoke run of the benchmark
# against a real OpenBao dev server.
#   scripts/test-airflow.sh [pytest args]
# Prints pytest's summary line last; exits non-zero on any failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  cargo build --quiet -p switchboard-cli
  export SWITCHBOARD_BIN="$root/target/debug/switchboard"
fi

started=$(date +%s)
venvs=$(scripts/airflow-shim-venvs.sh)
echo "test-airflow: venvs ready in $(( $(date +%s) - started ))s" >&2
SHIM_AIRFLOW_VENVS=$(echo "$venvs" | tr '\n' ' ')
export SHIM_AIRFLOW_VENVS
python=$(echo "$venvs" | sed -n 's/^3=//p')/bin/python

exec "$python" -m pytest tests/airflow/shim -p no:cacheprovider -rfE "$@"
