"""Benchmark: Airflow's VaultBackend against the Switchboard shim, in one run.

    tools/airflow-shim-3/bin/python tests/airflow/bench_shim.py [--iterations N] [--smoke]

(`scripts/airflow-shim-venvs.sh` builds that venv: pinned Airflow 3 plus
apache-airflow-providers-hashicorp and the shim.) Starts a `switchboard dev`
(target/release/switchboard when built, else target/debug; or $SWITCHBOARD_BIN)
and an OpenBao dev server (scripts/openbao.sh, KV v2 at mount `secret`, token
root), stores the same Postgres connection in both, and times per call:

- VaultBackend.get_connection (hvac → OpenBao over HTTP),
- SwitchboardBackend.get_connection with cache_ttl=0 (one ResolveConnection call each),
- SwitchboardBackend.get_conn_value served from the prefetched cache,
- SwitchboardBackend.get_connection from the cache (adds Airflow's Connection parsing).

Targets: uncached shim at least 4x faster than VaultBackend; cached
get_conn_value under 10 µs. --smoke runs a few iterations and only checks that
everything works (CI); the full run exits non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE / "shim"))

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
if "SWITCHBOARD_BIN" not in os.environ and (ROOT / "target" / "release" / "switchboard").exists():
    os.environ["SWITCHBOARD_BIN"] = str(ROOT / "target" / "release" / "switchboard")

from switchboard_server import Control, Server  # noqa: E402

PASSWORD = "bench-S3cret!pw"
BAO_PORT = os.environ.get("SHIM_BENCH_BAO_PORT", "58231")


def time_calls(cases: dict, rounds: int) -> dict:
    """Median over rounds of the mean µs per call, for each of ``cases``
    (name -> (function, iterations)). The rounds of all cases alternate and are
    short, so a burst of other load on the machine weighs on every case alike
    and spoils only the few rounds it overlaps, which the median leaves out."""
    per_call = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (function, iterations) in cases.items():
            per_round = max(1, iterations // rounds)
            started = time.perf_counter()
            for _ in range(per_round):
                function()
            per_call[name].append((time.perf_counter() - started) / per_round * 1e6)
    return {name: statistics.median(values) for name, values in per_call.items()}


def start_openbao() -> str:
    env = {**os.environ, "SWITCHBOARD_TEST_BAO_PORT": BAO_PORT}
    return subprocess.run([str(ROOT / "scripts" / "openbao.sh"), "start"], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def stop_openbao() -> None:
    env = {**os.environ, "SWITCHBOARD_TEST_BAO_PORT": BAO_PORT}
    subprocess.run([str(ROOT / "scripts" / "openbao.sh"), "stop"], env=env, check=False, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000, help="calls per measurement (default 2000)")
    parser.add_argument("--smoke", action="store_true", help="a few iterations, no targets (CI)")
    args = parser.parse_args()
    iterations = 25 if args.smoke else args.iterations
    cached_iterations = 200 if args.smoke else max(args.iterations * 100, 100_000)

    import hvac
    from airflow.providers.hashicorp.secrets.vault import VaultBackend

    from switchboard_airflow import SwitchboardBackend

    work = Path(tempfile.mkdtemp(prefix="bench-shim-"))
    server = Server(work / "data").start()
    bao_address = start_openbao()
    try:
        control = Control(server.address, server.user_token())
        prod = control.deployment("prod")
        fields = {"host": "db.example.com", "login": "app", "password": PASSWORD, "port": 5432,
                  "schema": "proddb"}
        control.connection("pg_bench", "postgres", extra={"sslmode": "require"}, links={prod: {}}, **fields)
        token = control.deployment_token(prod)

        hvac.Client(url=bao_address, token="root").secrets.kv.v2.create_or_update_secret(
            path="connections/pg_bench", mount_point="secret",
            secret={"conn_type": "postgres", **fields, "extra": json.dumps({"sslmode": "require"})},
        )
        vault = VaultBackend(url=bao_address, token="root", mount_point="secret", connections_path="connections",
                             variables_path=None, config_path=None, kv_engine_version=2)
        uncached = SwitchboardBackend(address=server.address, token=token, cache_ttl=0)
        cached = SwitchboardBackend(address=server.address, token=token, cache_ttl=3600)

        # Same answer from both, and warm-up (connections, imports, the resolver's cache).
        from_vault = vault.get_connection("pg_bench")
        from_shim = uncached.get_connection("pg_bench")
        # Both build the same Airflow Connection class per call, from the same fields.
        assert type(from_vault) is type(from_shim), (type(from_vault), type(from_shim))
        for conn in (from_vault, from_shim, cached.get_connection("pg_bench")):
            assert (conn.host, conn.schema, conn.login, conn.password, conn.port) == (
                "db.example.com", "proddb", "app", PASSWORD, 5432), conn
            assert conn.extra_dejson == {"sslmode": "require"}, conn.extra_dejson
        for _ in range(min(iterations, 50)):
            vault.get_connection("pg_bench")
            uncached.get_connection("pg_bench")

        results = time_calls({
            "vault_get_connection": (lambda: vault.get_connection("pg_bench"), iterations),
            "shim_uncached_get_connection": (lambda: uncached.get_connection("pg_bench"), iterations),
            "shim_cached_get_conn_value": (lambda: cached.get_conn_value("pg_bench"), cached_iterations),
            "shim_cached_get_connection": (lambda: cached.get_connection("pg_bench"), iterations),
        }, rounds=5 if args.smoke else 40)
    finally:
        server.stop()
        stop_openbao()

    speedup = results["vault_get_connection"] / results["shim_uncached_get_connection"]
    cached_speedup = results["vault_get_connection"] / results["shim_cached_get_conn_value"]
    server_bin = Path(os.environ.get("SWITCHBOARD_BIN") or ROOT / "target" / "debug" / "switchboard")
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(server_bin.stat().st_mtime))
    print(f"server: {server_bin} (built {built}); OpenBao at {bao_address}; "
          f"connection class {type(from_shim).__module__}.{type(from_shim).__name__}")
    for name, micros in results.items():
        print(f"{name:32s} {micros:12.2f} µs/call")
    print(f"VaultBackend / shim uncached       {speedup:8.1f}x  (target >= 4x)")
    print(f"VaultBackend / shim cached value   {cached_speedup:8.0f}x")
    print(f"shim cached get_conn_value         {results['shim_cached_get_conn_value']:8.2f} µs  (target < 10 µs)")
    print("BENCH " + json.dumps({**results, "uncached_speedup": speedup, "cached_speedup": cached_speedup,
                                 "smoke": args.smoke}))
    if args.smoke:
        return 0
    ok = speedup >= 4 and results["shim_cached_get_conn_value"] < 10
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
