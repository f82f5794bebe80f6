"""The shim inside real Airflow 2.10 and 3, against a real `switchboard dev`.

Airflow's own CLI does the checking: `airflow connections get`, and
`airflow dags test` of a DAG whose task reads connections through BaseHook
(on Airflow 3 through the LocalExecutor and the API server, the path a real
worker takes, so the task log is the real one the secrets masker filters).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PASSWORDS, seed
from switchboard_server import Server, resolve_all

OUTAGE = "cannot get connections from the resolver"
ENV_CONN = {"conn_type": "http", "host": "env.example.com", "login": "envuser", "password": "env-S3cret!pw"}


def connections_get(airflow, env, conn_id):
    result = airflow.run("connections", "get", conn_id, "-o", "json", env=env, check=False)
    if result.returncode != 0:
        return None, result
    return json.loads(result.stdout[result.stdout.index("[") :])[0], result


def test_connections_get_shows_merged_fields_per_deployment(airflow, switchboard):
    prod = airflow.env(switchboard.address, switchboard.tokens["prod"])
    staging = airflow.env(switchboard.address, switchboard.tokens["staging"])

    pg, _ = connections_get(airflow, prod, "pg_main")
    assert pg["conn_type"] == "postgres"
    assert pg["host"] == "db.example.com"  # base
    assert pg["schema"] == "proddb"  # prod's override
    assert pg["login"] == "app"
    assert pg["password"] == PASSWORDS["pg_main"]
    assert str(pg["port"]) == "5432"
    assert pg["extra_dejson"] == {"sslmode": "require", "application_name": "airflow-prod"}

    pg_staging, _ = connections_get(airflow, staging, "pg_main")
    assert pg_staging["schema"] == "stagingdb"
    assert str(pg_staging["port"]) == "6543"
    assert pg_staging["extra_dejson"] == {"sslmode": "require"}

    sf, _ = connections_get(airflow, prod, "sf_main")
    assert sf["conn_type"] == "snowflake"
    assert sf["login"] == "sfuser"
    assert sf["password"] == PASSWORDS["sf_main"]
    assert sf["extra_dejson"] == {"account": "myorg-acct", "warehouse": "PROD_WH", "database": "RAW", "role": "LOADER"}
    sf_staging, _ = connections_get(airflow, staging, "sf_main")
    assert sf_staging["extra_dejson"]["warehouse"] == "STAGING_WH"


def test_connection_json_is_the_resolvers(airflow, switchboard):
    """get_conn_value hands Airflow the resolver's airflow_json unchanged."""
    resolved = resolve_all(switchboard.address, switchboard.tokens["prod"])
    result = airflow.probe("lookup", {"SHIM_PROBE_ADDRESS": switchboard.address,
                                      "SHIM_PROBE_TOKEN": switchboard.tokens["prod"]})
    assert result["pg_json"] == resolved["pg_main"].airflow_json
    assert result["sf_json"] == resolved["sf_main"].airflow_json
    assert result["sf_again_same"] and result["team_name_call"]
    assert result["unknown"] is None
    assert result["variable"] is None
    assert result["conn"] == {"schema": "proddb", "host": "db.example.com", "login": "app", "port": 5432,
                              "extra": {"sslmode": "require", "application_name": "airflow-prod"}}
    # Registered with Airflow's secrets masker.
    assert result["redacted_password"] == "pw=***"
    # No provider for postgres or snowflake in these venvs: one hint each, naming the package.
    assert sorted(result["hints"]) == [
        "switchboard: connection 'pg_main' has conn_type 'postgres' but no installed provider supplies a hook "
        "for it; add apache-airflow-providers-postgres to requirements.txt",
        "switchboard: connection 'sf_main' has conn_type 'snowflake' but no installed provider supplies a hook "
        "for it; add apache-airflow-providers-snowflake to requirements.txt",
    ]
    assert result["errors"] == []


def test_unknown_id_falls_through_to_environment_variable(airflow, switchboard):
    env = airflow.env(switchboard.address, switchboard.tokens["prod"],
                      extra={"AIRFLOW_CONN_ENV_ONLY": json.dumps(ENV_CONN)})
    conn, _ = connections_get(airflow, env, "env_only")
    assert conn["host"] == "env.example.com"
    assert conn["login"] == "envuser"
    missing, result = connections_get(airflow, env, "nowhere_at_all")
    assert missing is None and "not found" in (result.stdout + result.stderr).lower()


def executor_env(airflow, env):
    # With --use-executor the task runs as in production, in its own process with
    # its own task log file (the console of a plain `dags test` is not masked by
    # Airflow 2.10 or 3.3): Airflow 2 `tasks run --local` through the
    # SequentialExecutor, Airflow 3 the Task SDK supervisor through the LocalExecutor.
    return {**env, "AIRFLOW__CORE__EXECUTOR": "LocalExecutor" if airflow.major == "3" else "SequentialExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2"}


def run_dag(airflow, env, dag_id, finished, tmp_path, while_running=None, timeout=180):
    """`airflow dags test --use-executor DAG_ID` until its task has written `finished`,
    calling `while_running()` every 50 ms meanwhile. Returns a CompletedProcess with
    the console output.

    Airflow 3's LocalExecutor sometimes leaves an idle worker waiting for a shutdown
    message after the run finished (apache/airflow#45329), and `dags test` never
    exits. Once the task is done, `dags test` gets 30 s to exit; if it has not, it is
    ended, and the returncode is None: the run finished, its exit code is unknown."""
    console_path = tmp_path / f"{dag_id}-console.log"
    command = [airflow.python, "-m", "airflow", "dags", "test", "--use-executor", dag_id]
    with open(console_path, "w") as console:
        process = subprocess.Popen(command, env=executor_env(airflow, env), stdout=console,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not finished.exists() and process.poll() is None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"airflow dags test {dag_id}: the task did not finish within {timeout}s:\n"
                                         f"{console_path.read_text()[-4000:]}\n{task_logs(airflow, dag_id)[-4000:]}")
                if while_running:
                    while_running()
                time.sleep(0.05)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print(f"airflow dags test {dag_id} did not exit after the run (LocalExecutor shutdown); ending it")
        finally:
            hung = process.poll() is None
            try:
                os.killpg(process.pid, signal.SIGKILL)  # and leftovers such as idle executor workers
            except ProcessLookupError:
                pass
            process.wait()
    return subprocess.CompletedProcess(command, None if hung else process.returncode, console_path.read_text(), "")


def dags_test(airflow, env, tmp_path, conn_ids):
    result_file = tmp_path / "seen.json"
    env = {**env, "SHIM_CHECK_CONN_IDS": ",".join(conn_ids), "SHIM_CHECK_RESULT": str(result_file),
           "AIRFLOW_CONN_ENV_ONLY": json.dumps(ENV_CONN)}
    run = run_dag(airflow, env, "switchboard_shim_check", result_file, tmp_path)
    seen = json.loads(result_file.read_text()) if result_file.exists() else None
    return run, seen, task_logs(airflow)


def task_logs(airflow, dag_id="switchboard_shim_check"):
    return "".join(p.read_text() for p in sorted((airflow.home / "logs").rglob("*.log")) if dag_id in str(p))


def clear_task_logs(airflow, dag_id="switchboard_shim_check"):
    for path in (airflow.home / "logs").rglob("*.log"):
        if dag_id in str(path):
            path.unlink()


def test_dags_test_task_sees_override_and_log_masks_password(airflow, switchboard, tmp_path):
    clear_task_logs(airflow)
    env = airflow.env(switchboard.address, switchboard.tokens["prod"])
    run, seen, log = dags_test(airflow, env, tmp_path, ["pg_main", "sf_main", "env_only"])
    assert run.returncode in (0, None), run.stdout[-4000:]  # None: ended after the run (see run_dag)
    assert seen is not None, log[-4000:]
    assert seen["pg_main"]["schema"] == "proddb"
    assert seen["pg_main"]["password"] == PASSWORDS["pg_main"]  # the task itself gets the real value
    assert seen["sf_main"]["extra"]["warehouse"] == "PROD_WH"
    assert seen["env_only"]["host"] == "env.example.com"  # fell through to AIRFLOW_CONN_ENV_ONLY
    # The task logged and printed the passwords: the log shows them masked.
    for conn_id in ("pg_main", "sf_main"):
        assert f"SHIM-CHECK {conn_id} password=***" in log, log[-4000:]
        assert f"SHIM-CHECK-PRINT {conn_id} password=***" in log, log[-4000:]
    assert PASSWORDS["pg_main"] not in log
    assert PASSWORDS["sf_main"] not in log
    assert "add apache-airflow-providers-snowflake to requirements.txt" in log
    assert OUTAGE not in log


def test_stopped_resolver_does_not_crash_the_task(airflow, tmp_path):
    server = Server(tmp_path / "data").start()
    seeded = seed(server)
    server.stop()  # the resolver is down for the whole run
    clear_task_logs(airflow)
    env = airflow.env(seeded.address, seeded.tokens["prod"], timeout=2)
    run, seen, log = dags_test(airflow, env, tmp_path, ["env_only"])
    assert run.returncode in (0, None), run.stdout[-4000:]  # None: ended after the run (see run_dag)
    assert seen == {"env_only": {**{k: ENV_CONN.get(k) for k in ("conn_type", "host", "login", "password")},
                                 "schema": None, "port": None, "extra": {}}}
    outage_lines = [line for line in log.splitlines() if OUTAGE in line]
    assert len(outage_lines) == 1, log[-4000:]
    assert seeded.address in outage_lines[0] and "UNAVAILABLE" in outage_lines[0]


def test_cache_prefetch_and_ttl(airflow, switchboard):
    result = airflow.probe("cache", {"SHIM_PROBE_ADDRESS": switchboard.address,
                                     "SHIM_PROBE_TOKEN": switchboard.tokens["prod"],
                                     "SHIM_PROBE_OPERATOR": switchboard.operator, "SHIM_PROBE_TTL": "4",
                                     "SHIM_PROBE_NEW_HOST": f"changed-{airflow.major}.example.com",
                                     "SHIM_PROBE_NEW_PASSWORD": f"rotated-{airflow.major}-S3cret!pw"})
    assert result["during"] == result["before"] != result["new"]  # served from the prefetch
    assert result["uncached"] == result["new"]  # cache_ttl 0 asks every time
    assert result["after"] == result["new"]  # refreshed after cache_ttl
    # The rotated password reached the masker, though the backend had masked the old one.
    assert result["rotated_password"] and result["rotated_redacted"] == "pw=***"


def test_fork_gets_its_own_channel(airflow, switchboard):
    result = airflow.probe("fork", {"SHIM_PROBE_ADDRESS": switchboard.address,
                                    "SHIM_PROBE_TOKEN": switchboard.tokens["prod"]})
    assert result["parent"] and result["child"][0] == result["parent"], result["child_warnings"]
    assert result["child"][1] and result["pid_tracked"], result["child_warnings"]
    assert result["parent_after"] == result["parent"]


def test_rotated_token_file_is_reread(airflow, switchboard, tmp_path):
    result = airflow.probe("token_file", {"SHIM_PROBE_ADDRESS": switchboard.address,
                                          "SHIM_PROBE_TOKEN": switchboard.tokens["prod"],
                                          "SHIM_PROBE_TOKEN_FILE": str(tmp_path / "token")})
    assert result["bad"] == [None, None, None]
    assert len(result["bad_warnings"]) == 1, result["bad_warnings"]  # one line for the failure, not one per call
    assert "the resolver refused the token (UNAUTHENTICATED" in result["bad_warnings"][0]
    assert result["good"] and json.loads(result["good"])["schema"] == "proddb"
    assert len(result["recovered"]) == 1, result["recovered"]


def test_outage_logs_once_and_serves_prefetched_values(airflow, tmp_path):
    server = Server(tmp_path / "data").start()
    seeded = seed(server)
    ready, stopped = tmp_path / "ready", tmp_path / "stopped"
    probe = subprocess.Popen(
        [airflow.python, str(Path(__file__).parent / "probe.py"), "outage"],
        env={**airflow.base_env, "SHIM_PROBE_ADDRESS": seeded.address, "SHIM_PROBE_TOKEN": seeded.tokens["prod"],
             "SHIM_PROBE_READY": str(ready), "SHIM_PROBE_STOPPED": str(stopped)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and probe.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
        stopped.write_text("stopped")
    out, err = probe.communicate(timeout=120)
    assert probe.returncode == 0, out[-2000:] + err[-4000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["fetched"] and result["stale_served"]
    assert result["fresh_values"] == [None] * 5
    # One line per outage in the process, however many backends and lookups met it.
    assert len(result["warnings"]) == 1, result["warnings"]
    assert f"nothing accepts connections at {seeded.address} (UNAVAILABLE" in result["warnings"][0]
    assert "the connections fetched before are served for up to max_stale" in result["warnings"][0]
    assert result["errors"] == []


def test_benchmark_smoke():
    """bench_shim.py --smoke: VaultBackend on OpenBao vs the shim, a few iterations (Airflow 3 venv)."""
    python = str(os.environ.get("SHIM_BENCH_PYTHON") or Path(sys.executable))
    run = subprocess.run([python, str(Path(__file__).parents[1] / "bench_shim.py"), "--smoke"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    line = next(l for l in run.stdout.splitlines() if l.startswith("BENCH "))
    results = json.loads(line[len("BENCH "):])
    assert results["vault_get_connection"] > 0 and results["shim_uncached_get_connection"] > 0
    print(run.stdout)
