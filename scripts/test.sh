#!/usr/bin/env bash
# Runs every check and test of the repository, the way CI does:
#   tools     scripts/install-tools.sh (grpcurl, buf into tools/)
#   buf       buf lint of proto/
#   fmt       cargo fmt --check
#   clippy    cargo clippy, warnings denied
#   build     the switchboard binary the end-to-end tests start
#   deploy    deploy/ manifests rendered and validated against Kubernetes schemas
#   services  PostgreSQL and OpenBao for the storage suites (scripts/postgres.sh, scripts/openbao.sh)
#   venv      the pinned Airflow 3 virtualenv (scripts/airflow-venv.sh)
#   test      cargo test --workspace (unit, storage suites, end-to-end, soak, fuzz)
#   leaks     the post-suite scan for marker secrets in everything the servers left
#   airflow   Airflow reads our JSON and URI encodings back unchanged
#   shim      the Airflow shim in real Airflow 2.10 and 3.3 (scripts/test-airflow.sh)
#   release   cargo build --release --locked, as the container image builds it
# Stops at the first failing section and prints how long each section took.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

timings=()
current=""
started=0
services_started=()
# Output of the test runners, for the totals line at the end.
test_output="$(mktemp)"

now() { date +%s.%N; }
elapsed() { awk -v end="$(now)" -v start="$started" 'BEGIN { printf "%.1f", end - start }'; }

summary() {
  local status=$1
  if [[ -n "$current" ]]; then
    timings+=("$(printf '%-9s %7ss  FAILED' "$current" "$(elapsed)")")
  fi
  echo
  echo "=== summary ==="
  local line
  for line in "${timings[@]}"; do
    echo "  $line"
  done
  if [[ $status -eq 0 ]]; then
    echo "=== all checks passed ==="
  else
    echo "=== FAILED in section '${current:-?}' (exit $status) ==="
  fi
  # Last, one closing line over every runner: cargo's "test result:" lines and the
  # plain "N passed, N failed" lines of the Python checks.
  if [[ -s "$test_output" ]]; then
    awk '
      /^test result:/ { passed += $4; failed += $6; skipped += $8; next }
      /^[0-9]+ passed, [0-9]+ failed/ { passed += $1; failed += $3 }
      END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped }
    ' "$test_output"
  fi
  rm -f "$test_output"
}

stop_services() {
  local service
  for service in "${services_started[@]}"; do
    "scripts/$service.sh" stop || true
  done
}

on_exit() {
  local status=$?
  stop_services
  summary "$status"
  exit "$status"
}
trap on_exit EXIT

section() {
  finish_section
  current=$1
  started=$(now)
  echo
  echo "=== $current: $2 ==="
}

finish_section() {
  if [[ -n "$current" ]]; then
    timings+=("$(printf '%-9s %7ss  ok' "$current" "$(elapsed)")")
    current=""
  fi
}

section tools "scripts/install-tools.sh"
scripts/install-tools.sh

section buf "buf lint"
tools/bin/buf lint
echo "buf lint: clean"

section fmt "cargo fmt --all -- --check"
cargo fmt --all -- --check

section clippy "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section build "cargo build -p switchboard-cli"
cargo build -p switchboard-cli

if [[ -x scripts/validate-deploy.sh ]]; then
  section deploy "kubectl kustomize + kubernetes-validate of deploy/"
  scripts/validate-deploy.sh
fi

section services "PostgreSQL and OpenBao for the storage suites"
# Starts a service unless one is already running; only services started here
# are stopped at exit.
start_service() {
  local service=$1 variable=$2 messages value
  messages="$(mktemp)"
  if ! value="$("scripts/$service.sh" start 2>"$messages")"; then
    cat "$messages" >&2
    rm -f "$messages"
    return 1
  fi
  cat "$messages" >&2
  if grep -q "starting" "$messages"; then
    services_started+=("$service")
  else
    echo "$service: already running, reusing it"
  fi
  rm -f "$messages"
  export "$variable=$value"
}
if [[ -x scripts/postgres.sh ]]; then
  start_service postgres SWITCHBOARD_TEST_DATABASE_URL
fi
if [[ -x scripts/openbao.sh ]]; then
  start_service openbao SWITCHBOARD_TEST_VAULT_ADDR
fi

section venv "pinned Airflow 3 venv (tests/airflow/requirements-3.txt)"
airflow_venv="$(scripts/airflow-venv.sh 3)"
export SWITCHBOARD_AIRFLOW_VENV="$airflow_venv"

section test "cargo test --workspace"
# Servers keep their logs, metrics and databases here for the leak scan.
export SWITCHBOARD_E2E_ARTIFACTS="$root/target/e2e-artifacts/run"
rm -rf "$SWITCHBOARD_E2E_ARTIFACTS"
cargo test --workspace 2>&1 | tee -a "$test_output"

section leaks "every marker secret absent from all servers' logs, metrics, databases and statuses"
cargo test -p switchboard-tests --test e2e -- --ignored --exact leak_scan::post_suite_scan_finds_no_marker --nocapture 2>&1 \
  | tee -a "$test_output"

section airflow "real Airflow reads our JSON and URI encodings back unchanged"
cargo run -q -p switchboard-domain --example airflow_fixtures \
  | "$airflow_venv/bin/python" tests/airflow/check_encoding.py 2> >(grep -v "warning" >&2) \
  | tee -a "$test_output"

section shim "the Airflow shim inside real Airflow 2.10 and 3.3 (scripts/test-airflow.sh)"
SWITCHBOARD_BIN="$root/target/debug/switchboard" scripts/test-airflow.sh

section release "cargo build --release --locked -p switchboard-cli (the container image's build command)"
cargo build --release --locked -p switchboard-cli

finish_section
