#!/usr/bin/env bash
# Runs every check and test of the repository, the way CI does:
#   tools     scripts/install-tools.sh (grpcurl, buf into tools/)
#   buf       buf lint of proto/
#   fmt       cargo fmt --check
#   clippy    cargo clippy, warnings denied
#   doc       cargo doc --no-deps, warnings denied (broken intra-doc links fail)
#   build     the switchboard binary the end-to-end tests start
#   deploy    deploy/ manifests rendered and validated against Kubernetes schemas
#   services  PostgreSQL and OpenBao for the storage suites (scripts/postgres.sh, scripts/openbao.sh)
#   venv      the pinned Airflow virtualenvs and the shim in them (scripts/airflow-*venv*.sh)
#   test      cargo test --workspace (unit, storage suites, end-to-end, soak, fuzz);
#             with SWITCHBOARD_REQUIRE_BACKENDS=1, so a missing backend fails
#   leaks     the post-suite scan for marker secrets in everything the servers left
#   airflow   Airflow reads our JSON and URI encodings back unchanged
#   shim      the Airflow shim in real Airflow 2.10 and 3.3 (scripts/test-airflow.sh)
#   release   cargo build --release --locked, as the container image builds it
# Stops at the first failing section and prints how long each section took.
#
# Usage: scripts/test.sh [SECTION...]
#   With no argument every section runs, in the order above. Named sections run
#   in that order too, with the sections they need: test needs tools, build,
#   services and venv; leaks needs test; buf needs tools; airflow needs venv;
#   shim needs build. Example: scripts/test.sh clippy test
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

all_sections=(tools buf fmt clippy doc build deploy services venv test leaks airflow shim release)
declare -A section_needs=(
  [buf]="tools"
  [test]="tools build services venv"
  [leaks]="test"
  [airflow]="venv"
  [shim]="build"
)
declare -A selected=()

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

select_section() {
  local name=$1 need
  [[ -n "${selected[$name]:-}" ]] && return 0
  selected[$name]=1
  for need in ${section_needs[$name]:-}; do
    select_section "$need"
  done
}

if [[ $# -eq 0 ]]; then
  for name in "${all_sections[@]}"; do selected[$name]=1; done
else
  for name in "$@"; do
    case "$name" in
      -h|--help) usage; exit 0 ;;
    esac
    if [[ ! " ${all_sections[*]} " == *" $name "* ]]; then
      echo "test.sh: unknown section '$name'; sections: ${all_sections[*]}" >&2
      exit 2
    fi
    select_section "$name"
  done
fi

wanted() { [[ -n "${selected[$1]:-}" ]]; }

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

# Starts section $1 (described by $2) and succeeds when it was selected.
section() {
  finish_section
  wanted "$1" || return 1
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

if section tools "scripts/install-tools.sh"; then
  scripts/install-tools.sh
fi

if section buf "buf lint"; then
  tools/bin/buf lint
  echo "buf lint: clean"
fi

if section fmt "cargo fmt --all -- --check"; then
  cargo fmt --all -- --check
fi

if section clippy "cargo clippy --workspace --all-targets -- -D warnings"; then
  cargo clippy --workspace --all-targets -- -D warnings
fi

if section doc "cargo doc --no-deps --workspace, warnings denied"; then
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace
fi

if section build "cargo build -p switchboard-cli"; then
  cargo build -p switchboard-cli
fi

if [[ -x scripts/validate-deploy.sh ]] && section deploy "kubectl kustomize + kubernetes-validate of deploy/"; then
  scripts/validate-deploy.sh
fi

if section services "PostgreSQL and OpenBao for the storage suites"; then
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
fi

if section venv "pinned Airflow venvs and the shim's overlays (scripts/airflow-venv.sh, scripts/airflow-shim-venvs.sh)"; then
  airflow_venv="$(scripts/airflow-venv.sh 3)"
  export SWITCHBOARD_AIRFLOW_VENV="$airflow_venv"
  # The end-to-end suite runs the shim over TLS in tools/airflow-shim-3.
  scripts/airflow-shim-venvs.sh >/dev/null
fi

if section test "cargo test --workspace"; then
  # Servers keep their logs, metrics and databases here for the leak scan.
  export SWITCHBOARD_E2E_ARTIFACTS="$root/target/e2e-artifacts/run"
  rm -rf "$SWITCHBOARD_E2E_ARTIFACTS"
  # The backends and venvs are in place: a test that finds one missing fails.
  export SWITCHBOARD_REQUIRE_BACKENDS=1
  cargo test --workspace 2>&1 | tee -a "$test_output"
fi

if section leaks "every marker secret absent from all servers' logs, metrics, databases and statuses"; then
  cargo test -p switchboard-tests --test e2e -- --ignored --exact leak_scan::post_suite_scan_finds_no_marker --nocapture 2>&1 \
    | tee -a "$test_output"
fi

if section airflow "real Airflow reads our JSON and URI encodings back unchanged"; then
  cargo run -q -p switchboard-domain --example airflow_fixtures \
    | "$airflow_venv/bin/python" tests/airflow/check_encoding.py 2> >(grep -v "warning" >&2) \
    | tee -a "$test_output"
fi

if section shim "the Airflow shim inside real Airflow 2.10 and 3.3 (scripts/test-airflow.sh)"; then
  SWITCHBOARD_BIN="$root/target/debug/switchboard" scripts/test-airflow.sh
fi

if section release "cargo build --release --locked -p switchboard-cli (the container image's build command)"; then
  cargo build --release --locked -p switchboard-cli
fi

finish_section
