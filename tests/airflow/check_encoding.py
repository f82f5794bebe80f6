"""Reads our Airflow encodings back with real Airflow.

Input: JSON lines from `cargo run -p switchboard-domain --example airflow_fixtures`,
each with `conn_id`, `expected` fields, and our `json` and `uri` encodings.
Each encoding must come back unchanged through Airflow's own
`Connection.from_json` and `Connection(uri=...)`, and through the task SDK's
`Connection.from_json` and `Connection.from_uri`, which tasks use in Airflow 3.

Two differences are Airflow's, not ours, and are allowed for URIs only:
URI schemes are case-insensitive (`urlsplit` lower-cases them, so a conn_type
such as Fivetran's "Fivetran" comes back lower-cased), and an unset host or
login comes back as an empty string (Airflow's own `get_uri` writes the same
`:password@` and `@:port` forms).
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow.models.connection import Connection  # noqa: E402
from airflow.sdk import Connection as SdkConnection  # noqa: E402


def fields(connection):
    return {
        "conn_type": connection.conn_type,
        "host": connection.host or None,
        "schema": connection.schema or None,
        "login": connection.login,
        "password": connection.password,
        "port": connection.port,
        "extra": connection.extra_dejson,
    }


def canonical(value):
    return json.dumps(value, sort_keys=True)


def main():
    passed = failed = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        sample = json.loads(line)
        expected = dict(sample["expected"])
        expected["extra"] = expected.get("extra") or {}
        checks = {
            "json": fields(Connection.from_json(sample["json"], conn_id=sample["conn_id"])),
            "uri": fields(Connection(conn_id=sample["conn_id"], uri=sample["uri"])),
            # What tasks use in Airflow 3: the task SDK's own parsers.
            "sdk json": fields(SdkConnection.from_json(sample["json"], conn_id=sample["conn_id"])),
            "sdk uri": fields(SdkConnection.from_uri(sample["uri"], conn_id=sample["conn_id"])),
        }
        for form, got in checks.items():
            want = dict(expected)
            if form.endswith("uri"):
                want["conn_type"] = want["conn_type"].lower()
                got["conn_type"] = (got["conn_type"] or "").lower()
                got["login"] = got["login"] or None
            # Compare as canonical JSON so types count: 900 is not 900.0 and
            # True is not 1, although Python's == says they are.
            if canonical(got) == canonical(want):
                passed += 1
            else:
                failed += 1
                diff = {
                    key: (want[key], got.get(key))
                    for key in want
                    if canonical(want[key]) != canonical(got.get(key))
                }
                print(f"MISMATCH {sample['conn_id']} ({form}): expected vs Airflow: {diff}", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
