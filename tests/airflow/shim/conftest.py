"""Fixtures: a real `switchboard dev` with seeded connections, and real Airflow venvs.

SHIM_AIRFLOW_VENVS names the venvs ("2=/path 3=/path", as printed by
scripts/airflow-shim-venvs.sh); every test runs once per Airflow major version.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from switchboard_server import Control, Server, free_port  # noqa: E402

PASSWORDS = {"pg_main": "pg-S3cret!pw", "sf_main": "sf-S3cret!pw", "pg_cache": "cache-S3cret!pw"}


def venvs() -> dict[str, Path]:
    spec = os.environ.get("SHIM_AIRFLOW_VENVS", "")
    result = {}
    for item in spec.split():
        major, _, path = item.partition("=")
        result[major] = Path(path)
    return result


def pytest_generate_tests(metafunc):
    if "airflow" in metafunc.fixturenames:
        majors = sorted(venvs())
        metafunc.parametrize("airflow", majors, ids=[f"airflow{m}" for m in majors], indirect=True, scope="session")


class Seeded:
    def __init__(self, server: Server, operator: str, tokens: dict[str, str]):
        self.server = server
        self.address = server.address
        self.operator = operator
        self.tokens = tokens


def seed(server: Server) -> Seeded:
    operator = server.user_token()
    control = Control(server.address, operator)
    prod = control.deployment("prod")
    staging = control.deployment("staging")
    control.connection(
        "pg_main", "postgres", host="db.example.com", login="app", password=PASSWORDS["pg_main"], port=5432,
        schema="base", extra={"sslmode": "require"},
        links={prod: {"schema": "proddb", "extra": {"application_name": "airflow-prod"}},
               staging: {"schema": "stagingdb", "port": 6543}},
    )
    control.connection(
        "sf_main", "snowflake_password", login="sfuser", password=PASSWORDS["sf_main"],
        extra={"account": "myorg-acct", "warehouse": "BASE_WH", "database": "RAW", "role": "LOADER"},
        links={prod: {"extra": {"warehouse": "PROD_WH"}}, staging: {"extra": {"warehouse": "STAGING_WH"}}},
    )
    control.connection(
        "pg_cache", "postgres", host="cache.example.com", login="app", password=PASSWORDS["pg_cache"],
        links={prod: {}},
    )
    tokens = {"prod": control.deployment_token(prod), "staging": control.deployment_token(staging)}
    return Seeded(server, operator, tokens)


@pytest.fixture(scope="session")
def switchboard(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("switchboard") / "data").start()
    try:
        yield seed(server)
    finally:
        server.stop()


class Airflow:
    """One Airflow venv with its own AIRFLOW_HOME and a migrated SQLite metadata DB."""

    def __init__(self, major: str, venv: Path, home: Path):
        self.major = major
        self.venv = venv
        self.python = str(venv / "bin" / "python")
        self.home = home
        self.api_server: subprocess.Popen | None = None
        self.api_port: int | None = None
        self.base_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SWITCHBOARD_"))},
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(HERE / "dags"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__API_AUTH__JWT_SECRET": "shim-tests-jwt-secret-0123456789abcdef",
            "PYTHONPATH": str(HERE),
            # Airflow 2's SequentialExecutor runs `airflow tasks run` by name.
            "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        }

    def env(self, address: str | None = None, token: str | None = None, extra: dict | None = None, **kwargs):
        env = dict(self.base_env)
        if address is not None:
            backend_kwargs = json.dumps({"address": address, "token": token, **kwargs})
            env["AIRFLOW__SECRETS__BACKEND"] = "switchboard_airflow.SwitchboardBackend"
            env["AIRFLOW__SECRETS__BACKEND_KWARGS"] = backend_kwargs
            if self.major == "3":
                env["AIRFLOW__WORKERS__SECRETS_BACKEND"] = "switchboard_airflow.SwitchboardBackend"
                env["AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS"] = backend_kwargs
        if self.api_port:
            env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{self.api_port}/execution/"
        env.update(extra or {})
        return env

    def run(self, *args, env=None, timeout=300, check=True) -> subprocess.CompletedProcess:
        """`airflow ARGS` in its own process group, so a timeout also ends executor workers."""
        command = [self.python, "-m", "airflow", *args]
        process = subprocess.Popen(command, env=env or self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(f"airflow {' '.join(args)} timed out after {timeout}s:\n"
                                 f"{stdout[-3000:]}\n{stderr[-3000:]}")
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # leftovers such as idle executor workers
            except ProcessLookupError:
                pass
        result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        if check and result.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def probe(self, scenario: str, env: dict, timeout=120) -> dict:
        result = subprocess.run(
            [self.python, str(HERE / "probe.py"), scenario], env={**self.base_env, **env},
            capture_output=True, text=True, timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"probe {scenario} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                                 f"{result.stderr[-5000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def start_api_server(self):
        """Airflow 3 runs tasks through the Execution API: its real worker path needs the API server."""
        self.api_port = free_port()
        log = open(self.home / "api-server.log", "ab")
        self.api_server = subprocess.Popen(
            [self.python, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port)],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.api_server.poll() is not None:
                raise RuntimeError((self.home / "api-server.log").read_text()[-3000:])
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health", timeout=1)
                return
            except Exception:
                time.sleep(0.5)
        raise RuntimeError("airflow api-server did not answer within 120 s")

    def stop(self):
        if self.api_server and self.api_server.poll() is None:
            os.killpg(self.api_server.pid, signal.SIGTERM)
            try:
                self.api_server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.api_server.pid, signal.SIGKILL)
                self.api_server.wait()


@pytest.fixture(scope="session")
def airflow(request, tmp_path_factory):
    major = request.param
    instance = Airflow(major, venvs()[major], tmp_path_factory.mktemp(f"airflow{major}-home"))
    instance.run("db", "migrate")
    if major == "3":
        instance.start_api_server()
    try:
        yield instance
    finally:
        instance.stop()
