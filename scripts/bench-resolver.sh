#!/usr/bin/env bash
# The resolver benchmark at full size on the production shape: a private
# PostgreSQL and OpenBao, `switchboard control`, a resolver, and a second
# resolver with --no-cache for the cold path; then `switchboard bench` seeds
# 1,000 deployments, 2,000 connections and 20,000 links and measures.
#
#   scripts/bench-resolver.sh                 # release build, 5 s per phase
#   SEED=100,200,2000 DURATION=2s scripts/bench-resolver.sh
#
# Environment: SWITCHBOARD_BIN (default target/release/switchboard, built if
# absent), SEED, DURATION, and BENCH_PG_PORT / BENCH_BAO_PORT (56432 / 59200).
# Everything started here is stopped on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SWITCHBOARD_BIN:-$root/target/release/switchboard}
seed=${SEED:-1000,2000,20000}
duration=${DURATION:-5s}
pg_port=${BENCH_PG_PORT:-56432}
bao_port=${BENCH_BAO_PORT:-59200}
work=$(mktemp -d /tmp/switchboard-bench.XXXXXX)
chmod 755 "$work" # PostgreSQL runs as its own user and keeps its cluster here

if [[ ! -x $bin ]]; then
  (cd "$root" && cargo build --release -p switchboard-cli)
fi

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  SWITCHBOARD_TEST_PG_PORT=$pg_port SWITCHBOARD_TEST_PG_DIR=$work/pg \
    bash "$root/scripts/postgres.sh" stop >/dev/null 2>&1 || true
  SWITCHBOARD_TEST_BAO_PORT=$bao_port bash "$root/scripts/openbao.sh" stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

database_url=$(SWITCHBOARD_TEST_PG_PORT=$pg_port SWITCHBOARD_TEST_PG_DIR=$work/pg \
  bash "$root/scripts/postgres.sh" start | tail -1)
vault_addr=$(SWITCHBOARD_TEST_BAO_PORT=$bao_port bash "$root/scripts/openbao.sh" start | tail -1)
echo root >"$work/vault-token"
chmod 600 "$work/vault-token"
backends=(--database-url "$database_url" --data-dir "$work/data"
  --vault-addr "$vault_addr" --vault-token-file "$work/vault-token")

wait_for_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1; see $work/*.log" >&2
  return 1
}

"$bin" migrate "${backends[@]}" >"$work/migrate.log" 2>&1
"$bin" control "${backends[@]}" --listen 127.0.0.1:50771 --rate-limit 100000 \
  >"$work/control.log" 2>&1 &
pids+=($!)
wait_for_port 50771
"$bin" resolver "${backends[@]}" --listen 127.0.0.1:50772 --metrics-listen 127.0.0.1:50773 \
  --resolver-rate-limit 1000000 \
  >"$work/resolver.log" 2>&1 &
resolver_pid=$!
pids+=($resolver_pid)
"$bin" resolver "${backends[@]}" --listen 127.0.0.1:50774 --no-cache --resolver-rate-limit 1000000 \
  >"$work/cold.log" 2>&1 &
pids+=($!)
wait_for_port 50772
wait_for_port 50774

"$bin" token user --data-dir "$work/data" --subject bench --role benchbig=OPERATOR \
  >"$work/user-token"
"$bin" bench --endpoint http://127.0.0.1:50772 --control-endpoint http://127.0.0.1:50771 \
  --cold-endpoint http://127.0.0.1:50774 \
  --seed "$seed" --workspace benchbig --user-token-file "$work/user-token" \
  --duration "$duration" --metrics-url http://127.0.0.1:50773/metrics \
  --resolver-pid "$resolver_pid"
