"""What a user sees when the shim cannot get connections, in real Airflow 2.10 and 3.

The backend's WARNING in the task log (once per outage, again after a
recovery, the recovery at INFO), what `airflow connections get` shows with and
without --verbose, and `python -m switchboard_airflow check` against a real
`switchboard dev`, a revoked token, a port where nothing listens, a
control-only process and a TLS resolver.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import seed
from switchboard_server import Control, Server, free_port
from test_shim import OUTAGE, clear_task_logs, run_dag, task_logs

STEPS_DAG = "switchboard_shim_steps"
RECOVERED = "answers again"


def dags_test_steps(airflow, env, tmp_path, steps, actions):
    """Runs `steps` in a real task (`airflow dags test --use-executor switchboard_shim_steps`),
    calling `actions[name]()` whenever the task asks for `name`. Returns what the task saw
    and its task log."""
    directory = tmp_path / "steps"
    directory.mkdir()
    seen_file, answered = directory / "seen.json", set()

    def answer_requests():
        for request in directory.iterdir():
            if request.suffix != ".done" and request != seen_file and request.name not in answered:
                actions[request.read_text()]()
                answered.add(request.name)
                (directory / f"{request.name}.done").write_text("done")

    clear_task_logs(airflow, STEPS_DAG)
    env = {**env, "SHIM_STEPS": json.dumps(steps), "SHIM_STEPS_DIR": str(directory)}
    run = run_dag(airflow, env, STEPS_DAG, seen_file, tmp_path, while_running=answer_requests)
    log = task_logs(airflow, STEPS_DAG)
    assert seen_file.exists(), f"the task did not finish (exit {run.returncode}):\n{run.stdout[-4000:]}\n{log[-4000:]}"
    return json.loads(seen_file.read_text()), log


def shim_records(log: str) -> list[tuple[str, str]]:
    """(level, message) of each record of the shim's logger in a task log: Airflow 2
    writes `[time] {backend.py:N} WARNING - message`, Airflow 3 one JSON object a line."""
    records = []
    for line in log.splitlines():
        if "switchboard:" not in line:
            continue
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger", "").startswith("switchboard_airflow"):
                records.append((record["level"].upper(), record["event"]))
        else:
            match = re.search(r"\{backend\.py:\d+\} (\w+) - (.*)", line)
            if match:
                records.append((match.group(1), match.group(2)))
    return records


def test_outage_warns_once_then_recovery_then_warns_again(airflow, tmp_path):
    """Resolver down for three lookups (one WARNING), back for two (one INFO), down again
    for two (a WARNING again): the task log a user reads, through Airflow's own handlers."""
    server = Server(tmp_path / "data").start()
    seeded = seed(server)
    server.stop()
    env = airflow.env(seeded.address, seeded.tokens["prod"], cache_ttl=0, retry_interval=0, timeout=2)
    lookups = ["lookup pg_main"] * 3 + ["ask start"] + ["lookup pg_main"] * 2 + ["ask stop"] + ["lookup pg_main"] * 2
    try:
        seen, log = dags_test_steps(airflow, env, tmp_path, lookups,
                                    {"start": server.start, "stop": server.stop})
    finally:
        server.stop()
    missing = "AirflowNotFoundException"
    assert seen == [missing] * 3 + ["db.example.com"] * 2 + [missing] * 2, log[-4000:]
    records = shim_records(log)
    outages = [(level, message) for level, message in records if OUTAGE in message]
    recoveries = [(level, message) for level, message in records if RECOVERED in message]
    assert [level for level, _ in outages] == ["WARNING", "WARNING"], records
    assert [level for level, _ in recoveries] == ["INFO"], records
    assert records.index(outages[0]) < records.index(recoveries[0]) < len(records) - records[::-1].index(outages[1])
    for _, message in outages:
        assert f"nothing accepts connections at {seeded.address}" in message, message
        assert "Connection refused" in message and "To fix: start the resolver" in message, message
        assert "python -m switchboard_airflow check" in message
        assert seeded.tokens["prod"] not in message
    assert seeded.tokens["prod"] not in log


def test_refused_token_warns_that_the_token_was_refused(airflow, switchboard, tmp_path):
    env = airflow.env(switchboard.address, "sbdt_0123456789abcdef_not-a-real-secret", cache_ttl=0, retry_interval=0)
    seen, log = dags_test_steps(airflow, env, tmp_path, ["lookup pg_main"] * 3, {})
    assert seen == ["AirflowNotFoundException"] * 3
    outages = [(level, message) for level, message in shim_records(log) if OUTAGE in message]
    assert len(outages) == 1, shim_records(log)
    level, message = outages[0]
    assert level == "WARNING"
    assert "the resolver refused the token (UNAUTHENTICATED: invalid or revoked deployment token)" in message
    assert "mint a new one (`switchboard deployments token DEPLOYMENT`)" in message
    assert "not-a-real-secret" not in log


def test_connections_get_shows_the_reason_only_with_verbose(airflow, switchboard):
    """`airflow connections get` silences logging unless --verbose (@suppress_logs_and_warning)."""
    env = airflow.env(switchboard.address, "sbdt_0123456789abcdef_not-a-real-secret")
    quiet = airflow.run("connections", "get", "pg_main", env=env, check=False)
    assert quiet.returncode != 0
    assert "Connection not found." in quiet.stderr + quiet.stdout
    assert OUTAGE not in quiet.stderr + quiet.stdout
    verbose = airflow.run("connections", "get", "pg_main", "--verbose", env=env, check=False)
    output = verbose.stderr + verbose.stdout
    assert verbose.returncode != 0 and "Connection not found." in output
    lines = [line for line in output.splitlines() if OUTAGE in line]
    assert len(lines) == 1, output[-4000:]
    assert "WARNING" in lines[0].upper() and "the resolver refused the token" in lines[0]


# ---- python -m switchboard_airflow check ----------------------------------------


def check(airflow, env):
    result = subprocess.run([airflow.python, "-m", "switchboard_airflow", "check"], env=env,
                            capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stdout.splitlines() if re.match(r"(ok|note|FAIL)  ", line)]
    return result.returncode, lines, result.stdout + result.stderr


def line(lines, status, topic):
    """The one line of `topic` with `status`."""
    found = [text for text in lines if re.match(rf"{status}\s+(\[\w+\] )?{re.escape(topic)}: ", text)]
    assert len(found) == 1, lines
    return found[0]


def test_check_with_a_good_token(airflow, switchboard):
    token = switchboard.tokens["prod"]
    code, lines, output = check(airflow, airflow.env(switchboard.address, token))
    assert code == 0, output
    assert line(lines, "ok", "[secrets] backend").endswith("switchboard_airflow.SwitchboardBackend")
    assert line(lines, "ok", "address") == \
        f"ok    address: {switchboard.address}, plaintext (from backend_kwargs address)"
    token_id = token.split("_")[1]
    assert line(lines, "ok", "token").startswith(f"ok    token: a deployment token, id {token_id} (sbdt_{token_id}_…")
    assert line(lines, "ok", "answers") == \
        f"ok    answers: {switchboard.address} accepts connections and speaks plaintext"
    assert line(lines, "ok", "resolver") == f"ok    resolver: {switchboard.address} serves the ResolverService"
    assert "ok    accepted: the resolver accepts the token" in lines
    assert line(lines, "ok", "deployment") == "ok    deployment: workspaces/acme/deployments/prod"
    assert line(lines, "ok", "connections") == "ok    connections: 3 (pg_cache, pg_main, sf_main)"
    assert not [text for text in lines if text.startswith("FAIL")]
    if airflow.major == "3":  # the fixture sets [workers] to the same settings
        assert line(lines, "ok", "[workers] secrets_backend_kwargs").endswith("the same settings as [secrets]")
    assert token not in output and token.split("_", 2)[2] not in output


def test_check_from_environment_variables_alone(airflow, switchboard):
    """SWITCHBOARD_ADDRESS / SWITCHBOARD_TOKEN_FILE without Airflow's [secrets] backend: the
    settings are checked, and the missing backend is a failure that says what to set."""
    token_file = switchboard.server.data_dir.parent / f"staging-{airflow.major}.token"
    token_file.write_text(switchboard.tokens["staging"] + "\n")
    env = airflow.env(extra={"SWITCHBOARD_ADDRESS": switchboard.address, "SWITCHBOARD_TOKEN_FILE": str(token_file)})
    code, lines, output = check(airflow, env)
    assert code == 1, output
    assert "set [secrets] backend = switchboard_airflow.SwitchboardBackend" in line(lines, "FAIL", "[secrets] backend")
    assert line(lines, "ok", "address").endswith("(from SWITCHBOARD_ADDRESS)")
    assert f"from SWITCHBOARD_TOKEN_FILE {token_file}" in line(lines, "ok", "token")
    assert line(lines, "ok", "deployment") == "ok    deployment: workspaces/acme/deployments/staging"
    assert line(lines, "ok", "connections") == "ok    connections: 2 (pg_main, sf_main)"
    assert switchboard.tokens["staging"] not in output


def test_check_with_a_revoked_token(airflow, switchboard):
    control = Control(switchboard.address, switchboard.operator)
    issued = control.issue_token("workspaces/acme/deployments/prod")
    control.revoke_token(issued.name)
    code, lines, output = check(airflow, airflow.env(switchboard.address, issued.token))
    assert code == 1, output
    assert line(lines, "ok", "resolver") == f"ok    resolver: {switchboard.address} serves the ResolverService"
    refused = line(lines, "FAIL", "accepted")
    assert "the resolver refused the token (UNAUTHENTICATED: invalid or revoked deployment token)" in refused
    assert "To fix: the token is wrong, revoked, or its deployment was deleted: mint a new one" in refused
    assert not [text for text in lines if text.startswith(("ok    deployment", "ok    connections"))]
    assert issued.token not in output


def test_check_where_nothing_listens(airflow, switchboard):
    address = f"127.0.0.1:{free_port()}"
    code, lines, output = check(airflow, airflow.env(address, switchboard.tokens["prod"]))
    assert code == 1, output
    failed = line(lines, "FAIL", "answers")
    assert failed.startswith(f"FAIL  answers: nothing listens at {address} (connection refused). To fix: start the "
                             "resolver there")
    assert 'set backend_kwargs "address" (or SWITCHBOARD_ADDRESS)' in failed
    assert not [text for text in lines if "resolver:" in text or "deployment:" in text]


def test_check_against_a_control_only_process(airflow, tmp_path):
    control = Server(tmp_path / "control", role="control").start()
    try:
        code, lines, output = check(airflow, airflow.env(control.address, "sbdt_0123456789abcdef_any"))
    finally:
        control.stop()
    assert code == 1, output
    assert line(lines, "ok", "answers").endswith("accepts connections and speaks plaintext")
    assert line(lines, "FAIL", "resolver") == (
        f"FAIL  resolver: {control.address} is a Switchboard control process: it serves the ConnectionService but "
        "not the ResolverService. To fix: point the address at the resolver (`switchboard resolver`, or "
        "`switchboard dev`), not at `switchboard control`")


def test_check_plaintext_against_a_tls_resolver(airflow, tmp_path):
    """The shim set to plaintext, the resolver serving TLS, and the other way round; a
    certificate the shim does not trust; and TLS that works."""
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make the test certificate")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    key.chmod(0o600)
    tls = Server(tmp_path / "tls", extra_args=("--tls-cert", str(cert), "--tls-key", str(key))).start()
    plaintext = Server(tmp_path / "plain").start()
    try:
        code, lines, output = check(airflow, airflow.env(tls.address, "sbdt_0123456789abcdef_any"))
        assert code == 1, output
        assert line(lines, "FAIL", "answers").startswith(
            f"FAIL  answers: {tls.address} speaks TLS, but the shim connects in plaintext. To fix: write the address "
            "as https://HOST:PORT")
        code, lines, output = check(airflow, airflow.env(plaintext.address, "sbdt_0123456789abcdef_any",
                                                         tls_ca=str(cert)))
        assert code == 1, output
        assert line(lines, "FAIL", "answers").startswith(
            f"FAIL  answers: {plaintext.address} answers in plaintext, but the shim connects with TLS (tls_ca is "
            "set). To fix: drop the https:// prefix")
        # TLS both ways, but the system's CAs do not know the test CA.
        code, lines, output = check(airflow, airflow.env(f"https://{tls.address}", "sbdt_0123456789abcdef_any"))
        assert code == 1, output
        untrusted = line(lines, "FAIL", "resolver")
        assert untrusted.startswith("FAIL  resolver: the resolver's TLS certificate is not trusted (UNAVAILABLE: ")
        assert 'To fix: set backend_kwargs "tls_ca" to the PEM file of the CA' in untrusted
        # Matching TLS gets as far as the token.
        trusted = f"localhost:{tls.port}"
        code, lines, output = check(airflow, airflow.env(trusted, "sbdt_0123456789abcdef_any", tls_ca=str(cert)))
        assert line(lines, "ok", "answers") == f"ok    answers: {trusted} accepts connections and speaks TLS"
        assert "UNAUTHENTICATED" in line(lines, "FAIL", "accepted"), output
    finally:
        tls.stop()
        plaintext.stop()
