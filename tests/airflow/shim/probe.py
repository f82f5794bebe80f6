"""Runs one scenario of SwitchboardBackend inside a real Airflow venv.

    python probe.py SCENARIO   (settings in SHIM_PROBE_* environment variables)

Prints one JSON object on its last line; the pytest suite asserts on it. The
backend talks to a real `switchboard dev` started by the suite.
"""

import json
import logging
import os
import sys
import time


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append((record.levelname, record.getMessage()))

    def lines(self, needle, level=None):
        return [m for lvl, m in self.records if needle in m and (level is None or lvl == level)]


capture = Capture()
shim_log = logging.getLogger("switchboard_airflow")
shim_log.addHandler(capture)
shim_log.setLevel(logging.DEBUG)

from switchboard_airflow import SwitchboardBackend  # noqa: E402

ADDRESS = os.environ["SHIM_PROBE_ADDRESS"]
TOKEN = os.environ.get("SHIM_PROBE_TOKEN", "")
OUTAGE = "cannot get connections from the resolver"


def backend(**kwargs):
    kwargs.setdefault("address", ADDRESS)
    if "token_file" not in kwargs:
        kwargs.setdefault("token", TOKEN)
    return SwitchboardBackend(**kwargs)


def redacted(text):
    """Airflow's own redaction of `text` with the masker the task logs use."""
    for module in ("airflow.sdk._shared.secrets_masker", "airflow.sdk.execution_time.secrets_masker",
                   "airflow.utils.log.secrets_masker"):
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                masker = __import__(module, fromlist=["redact"])
            return masker.redact(text)
        except ImportError:
            continue
    raise RuntimeError("no secrets masker found")


def scenario_lookup():
    """Values, unknown ids, variables, team_name, masking, provider hint."""
    b = backend(team_name="team-a")
    pg = b.get_conn_value("pg_main")
    sf = b.get_conn_value("SF_MAIN")  # conn_ids match ignoring case, like the resolver
    again = b.get_conn_value("sf_main")
    conn = b.get_connection("pg_main")
    return {
        "pg_json": pg,
        "sf_json": sf,
        "sf_again_same": again == sf,
        "unknown": b.get_conn_value("no_such_conn"),
        "variable": b.get_variable("some_var"),
        "team_name_call": b.get_conn_value("pg_main", team_name="team-a") == pg,
        "conn": {"schema": conn.schema, "host": conn.host, "login": conn.login, "port": conn.port,
                 "extra": conn.extra_dejson},
        "redacted_password": redacted(f"pw={conn.password}"),
        "hints": capture.lines("add apache-airflow-providers-"),
        "errors": capture.lines("", "ERROR") + capture.lines(OUTAGE),
    }


def scenario_cache():
    """One prefetch serves every lookup until cache_ttl; then the change shows.
    A rotated password is handed to the masker by a backend that saw the old one."""
    from switchboard_server import Control  # the suite's control client

    ttl = float(os.environ["SHIM_PROBE_TTL"])
    new = os.environ["SHIM_PROBE_NEW_HOST"]
    new_password = os.environ["SHIM_PROBE_NEW_PASSWORD"]
    b = backend(cache_ttl=ttl)
    uncached_backend = backend(cache_ttl=0)
    started = time.monotonic()
    before = json.loads(b.get_conn_value("pg_cache"))["host"]
    uncached_backend.get_conn_value("pg_cache")  # masks the password it has now
    control = Control(ADDRESS, os.environ["SHIM_PROBE_OPERATOR"])
    control.update_connection("pg_cache", host=new, password=new_password)
    time.sleep(1.5)  # the resolver follows its change feed within 1 s
    during = json.loads(b.get_conn_value("pg_cache"))["host"]
    assert time.monotonic() - started < ttl, "too slow to observe the cache"
    uncached = json.loads(uncached_backend.get_conn_value("pg_cache"))
    time.sleep(max(0.0, ttl - (time.monotonic() - started)) + 0.2)
    after = json.loads(b.get_conn_value("pg_cache"))["host"]
    return {"new": new, "before": before, "during": during, "uncached": uncached["host"], "after": after,
            "rotated_password": uncached["password"] == new_password,
            "rotated_redacted": redacted(f"pw={new_password}")}


def scenario_fork():
    """A channel made before fork is not used by the child, which gets its own."""
    b = backend(cache_ttl=0)
    parent = b.get_conn_value("pg_main")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            child = [backend_value for backend_value in (b.get_conn_value("pg_main"), b.get_conn_value("sf_main"))]
            os.write(write, json.dumps({"child": child, "pid_tracked": b._pid == os.getpid(),
                                        "child_warnings": capture.lines("", "WARNING")}).encode())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.waitpid(pid, 0)
    result = json.loads(data)
    result["parent"] = parent
    result["parent_after"] = b.get_conn_value("pg_main")
    return result


def scenario_token_file():
    """A rotated token file is picked up without restarting; a bad token logs once."""
    path = os.environ["SHIM_PROBE_TOKEN_FILE"]
    with open(path, "w") as handle:
        handle.write("sbdt_not_a_real_token\n")
    b = backend(token_file=path, cache_ttl=0, retry_interval=0)
    bad = [b.get_conn_value("pg_main") for _ in range(3)]
    bad_warnings = capture.lines(OUTAGE, "WARNING")
    time.sleep(0.01)
    with open(path + ".new", "w") as handle:
        handle.write(TOKEN + "\n")
    os.replace(path + ".new", path)  # as a Kubernetes Secret update swaps the file
    good = b.get_conn_value("pg_main")
    return {"bad": bad, "bad_warnings": bad_warnings, "good": good,
            "recovered": capture.lines("answers again", "INFO")}


def scenario_outage():
    """SHIM_PROBE_PHASE=prefetch: fill the cache, signal, wait for the stop, then look up."""
    b = backend(cache_ttl=1, retry_interval=0.2, timeout=2)
    fetched = b.get_conn_value("pg_main")
    with open(os.environ["SHIM_PROBE_READY"], "w") as handle:
        handle.write("ready")
    stopped = os.environ["SHIM_PROBE_STOPPED"]
    deadline = time.monotonic() + 30
    while not os.path.exists(stopped) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.2)  # let the cache go stale
    during = [b.get_conn_value("pg_main") for _ in range(5)]
    # A second backend in the same process, as Airflow 3 workers before 3.3 built one per lookup:
    # the same outage, so no second line.
    fresh = backend(cache_ttl=1, timeout=2)
    fresh_values = [fresh.get_conn_value("pg_main") for _ in range(5)]
    return {
        "fetched": fetched,
        "stale_served": all(v == fetched for v in during),
        "fresh_values": fresh_values,
        "warnings": capture.lines(OUTAGE, "WARNING"),
        "errors": capture.lines("", "ERROR"),
    }


if __name__ == "__main__":
    result = globals()[f"scenario_{sys.argv[1]}"]()
    print(json.dumps(result))
