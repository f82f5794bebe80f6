"""``python -m switchboard_airflow check``: is this Airflow environment's Switchboard set up right?

Builds the backend the way Airflow does (``get_custom_secret_backend``: the
``[secrets]`` backend and backend_kwargs, on Airflow 3 also ``[workers]``), so
the settings are exactly the ones Airflow's processes use, environment
fallbacks (``SWITCHBOARD_*``) included. Then it says, a line each, which
address and token that gives, whether the address answers and speaks what the
shim speaks, whether the resolver accepts the token, which deployment the
token belongs to and how many connections it sees. A failure line says what to
do; the exit code is 1 if any line failed. The token itself is never printed:
a deployment token is shown as ``sbdt_<id>_…``, its id being public (the token
resource name ``…/tokens/<id>`` that ``switchboard deployments tokens`` lists).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import ssl
import sys
from typing import Any, TextIO

from switchboard_airflow.failures import (
    PLAINTEXT_SERVER,
    START_RESOLVER,
    TLS_SERVER,
    Explained,
)

BACKEND_CLASS = "switchboard_airflow.SwitchboardBackend"

#: `sbdt_<16 hex id>_<secret>`, as the control service issues them.
_DEPLOYMENT_TOKEN = re.compile(r"sbdt_([0-9a-f]{16})_\S+")
_LISTED_CONNECTIONS = 20


class Report:
    """Prints one line per finding and remembers whether any failed."""

    def __init__(self, out: TextIO):
        self.out = out
        self.failed = False
        self.topic_prefix = ""

    def ok(self, topic: str, text: str) -> None:
        self._line("ok", topic, text)

    def note(self, topic: str, text: str) -> None:
        self._line("note", topic, text)

    def fail(self, topic: str, explained: Explained) -> None:
        self.failed = True
        self._line("FAIL", topic, f"{explained.cause}. To fix: {explained.fix}")

    def _line(self, status: str, topic: str, text: str) -> None:
        print(f"{status:<4}  {self.topic_prefix}{topic}: {text}", file=self.out, flush=True)


def run(out: TextIO = sys.stdout) -> int:
    """Runs the check, printing to ``out``; returns the exit code."""
    report = Report(out)
    try:
        import airflow

        from switchboard_airflow import __version__
        from switchboard_airflow.backend import SwitchboardBackend
    except Exception as error:  # noqa: BLE001 - whatever stops the import is the finding
        report.fail("airflow", Explained(
            f"cannot import Airflow or the backend ({type(error).__name__}: {error})",
            "run the check with the Python of the Airflow environment (the one `airflow` runs with)",
        ))
        return 1
    print(f"switchboard-airflow {__version__} check, Airflow {airflow.__version__}", file=out, flush=True)
    backends = _configured_backends(report, int(airflow.__version__.split(".")[0]), SwitchboardBackend)
    for label, backend in backends:
        report.topic_prefix = f"{label} " if len(backends) > 1 else ""
        _check_backend(report, backend)
    return 1 if report.failed else 0


# ---- settings ----------------------------------------------------------------


def _airflow_configuration():
    """Airflow's conf and get_custom_secret_backend: core's, else the Task SDK's (a worker without core)."""
    try:
        from airflow.configuration import conf, get_custom_secret_backend
    except ImportError:
        from airflow.sdk.configuration import conf, get_custom_secret_backend
    return conf, get_custom_secret_backend


def _configured_backends(report: Report, airflow_major: int, backend_class) -> list[tuple[str, Any]]:
    """The distinct Switchboard backends Airflow builds from its configuration, labelled
    by section; the environment's alone when Airflow is not configured to use it."""
    conf, get_custom_secret_backend = _airflow_configuration()
    sections = [("secrets", "backend", "backend_kwargs", False)]
    if airflow_major >= 3:  # tasks read [workers], falling back to [secrets]
        sections.append(("workers", "secrets_backend", "secrets_backend_kwargs", True))
    found: list[tuple[str, Any]] = []
    for section, key, kwargs_key, worker_mode in sections:
        option = f"[{section}] {key}"
        class_path = (conf.get(section, key, fallback="") or "").strip()
        if worker_mode and not class_path:
            report.note(option, "not set, so tasks use the [secrets] backend and its backend_kwargs")
            continue
        if class_path != BACKEND_CLASS:
            report.fail(option, Explained(
                f"is {class_path!r}, so Airflow does not ask Switchboard",
                f"set {option} = {BACKEND_CLASS} (or AIRFLOW__{section.upper()}__{key.upper()})",
            ))
            continue
        report.ok(option, class_path)
        _check_kwargs_json(report, conf, section, kwargs_key)
        try:
            backend = get_custom_secret_backend(worker_mode=True) if worker_mode else get_custom_secret_backend()
        except ValueError as error:  # a bad number in backend_kwargs
            report.fail(f"[{section}] {kwargs_key}", Explained(str(error), f"correct it in [{section}] {kwargs_key}"))
            continue
        if found and _settings(found[0][1]) == _settings(backend):
            report.ok(f"[{section}] {kwargs_key}", "the same settings as [secrets]")
            continue
        found.append((f"[{section}]", backend))
    if not found:
        try:
            found.append(("environment", backend_class()))
        except ValueError as error:
            report.fail("settings", Explained(str(error), "correct it"))
            return []
        report.note("settings", "checking the SWITCHBOARD_* environment variables alone")
    return found


def _check_kwargs_json(report: Report, conf, section: str, kwargs_key: str) -> None:
    """Airflow ignores backend_kwargs that are not a JSON object, with one warning; say so plainly."""
    raw = (conf.get(section, kwargs_key, fallback="") or "").strip()
    if not raw:
        return
    try:
        parsed = json.loads(raw)
        problem = None if isinstance(parsed, dict) else f"a JSON {type(parsed).__name__}, not an object"
    except ValueError as error:
        problem = f"not valid JSON ({error})"
    if problem:
        report.fail(f"[{section}] {kwargs_key}", Explained(
            f"is {problem}, so Airflow ignores it and the backend reads only SWITCHBOARD_* variables",
            'write it as a JSON object, e.g. {"address": "HOST:PORT", "token_file": "/path/to/token"}',
        ))


def _settings(backend) -> tuple:
    return (backend.address, backend._tls, backend.tls_ca, backend.token_source, backend.deployment,
            backend.timeout)


# ---- one backend -------------------------------------------------------------


def _check_backend(report: Report, backend) -> None:
    from switchboard_airflow.backend import _Failure

    address = backend.address
    if address:
        mode = "TLS" if backend._tls else "plaintext"
        report.ok("address", f"{address}, {mode} (from {backend.address_source})")
    else:
        report.fail("address", Explained(
            "no resolver address is set", 'set backend_kwargs "address" (or SWITCHBOARD_ADDRESS) to HOST:PORT'
        ))
    token = ""
    try:
        token = backend._token()
    except _Failure as failure:
        report.fail("token", failure.explained)
    else:
        token_ok = _describe_token(report, token, backend.token_source)
        token = token if token_ok else ""
    if not address or not _answers(report, backend):
        return
    if token:
        _call_resolver(report, backend)


def _describe_token(report: Report, token: str, source: str) -> bool:
    """One line on what the token looks like, never the secret; False when it is unusable."""
    where = f"from {source}"
    if not token:
        report.fail("token", Explained(
            f"no token is set ({where} is empty or unset)",
            'set backend_kwargs "token" or "token_file", or SWITCHBOARD_TOKEN or SWITCHBOARD_TOKEN_FILE',
        ))
        return False
    if token.lower().startswith("bearer "):
        report.fail("token", Explained(
            f"the token {where} starts with 'Bearer '", "give the token alone; the shim adds the Bearer header"
        ))
        return False
    match = _DEPLOYMENT_TOKEN.fullmatch(token)
    if match:
        report.ok("token", f"a deployment token, id {match.group(1)} (sbdt_{match.group(1)}_…, {where})")
    elif token.startswith("sbdt_"):
        report.fail("token", Explained(
            f"the token {where} starts with sbdt_ but is not a whole deployment token ({len(token)} characters)",
            "copy the whole token again, or mint a new one (`switchboard deployments token DEPLOYMENT`)",
        ))
        return False
    elif token.count(".") == 2:
        report.ok("token", f"a user token (a JWT, for local development; {where})")
    else:
        report.note("token", f"not a deployment token (those start with sbdt_) nor a JWT ({where}, "
                             f"{len(token)} characters); the resolver decides")
    return True


def _split_address(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _answers(report: Report, backend) -> bool:
    """Whether something listens at the address and speaks what the shim will speak."""
    address, timeout = backend.address, backend.timeout
    parts = _split_address(address)
    if parts is None:
        report.fail("answers", Explained(
            f"the address {address} has no port", "write it as HOST:PORT (the resolver's --listen, 50051 by default)"
        ))
        return False
    host, port = parts
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as error:
        report.fail("answers", Explained(
            f"the host {host} cannot be resolved ({error.strerror})",
            'check the host in backend_kwargs "address" (or SWITCHBOARD_ADDRESS)',
        ))
        return False
    except ConnectionRefusedError:
        report.fail("answers", Explained(f"nothing listens at {address} (connection refused)", START_RESOLVER))
        return False
    except socket.timeout:  # TimeoutError on Python 3.10+
        report.fail("answers", Explained(
            f"no answer from {address} within {timeout:g} s",
            "check the host and port, and that the network (firewall, NetworkPolicy) lets this host reach it",
        ))
        return False
    except OSError as error:
        report.fail("answers", Explained(
            f"cannot connect to {address} ({error.strerror or error})", "check the host and port"
        ))
        return False
    speaks_tls = _speaks_tls(sock, host, timeout)
    if speaks_tls and not backend._tls:
        report.fail("answers", Explained(f"{address} speaks TLS, but the shim connects in plaintext", TLS_SERVER))
        return False
    if speaks_tls is False and backend._tls:
        why = "tls_ca is set" if backend.tls_ca else "the address starts with https://"
        report.fail("answers", Explained(
            f"{address} answers in plaintext, but the shim connects with TLS ({why})", PLAINTEXT_SERVER
        ))
        return False
    spoken = {True: "TLS", False: "plaintext", None: "(could not tell TLS from plaintext)"}[speaks_tls]
    report.ok("answers", f"{address} accepts connections and speaks {spoken}")
    return True


def _speaks_tls(sock: socket.socket, host: str, timeout: float) -> bool | None:
    """True if the server completes a TLS handshake, False if it answers it with
    something else, None if it does not answer in time. Verification is off: this
    only asks which protocol is spoken; the gRPC call verifies the certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        ipaddress.ip_address(host)
        server_hostname = None
    except ValueError:
        server_hostname = host
    sock.settimeout(timeout)
    try:
        with context.wrap_socket(sock, server_hostname=server_hostname):
            return True
    except socket.timeout:
        return None
    except (ssl.SSLError, OSError):
        return False
    finally:
        sock.close()


def _call_resolver(report: Report, backend) -> None:
    """ListResolvedConnections with the backend's own channel and token, as a lookup does."""
    from switchboard_airflow.backend import _Failure
    from switchboard_airflow.proto.switchboard.v1 import resolver_pb2

    address = backend.address
    try:
        response = backend._call(
            "ListResolvedConnections", resolver_pb2.ListResolvedConnectionsRequest(deployment=backend.deployment)
        )
    except _Failure as failure:
        code = failure.code
        if code == "UNIMPLEMENTED":
            if _serves_control(backend):
                report.fail("resolver", Explained(
                    f"{address} is a Switchboard control process: it serves the ConnectionService but not the "
                    "ResolverService",
                    "point the address at the resolver (`switchboard resolver`, or `switchboard dev`), "
                    "not at `switchboard control`",
                ))
            else:
                report.fail("resolver", failure.explained)
            return
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "INVALID_ARGUMENT"):
            report.ok("resolver", f"{address} serves the ResolverService")
        if code == "UNAUTHENTICATED":
            report.fail("accepted", failure.explained)
        elif code in ("PERMISSION_DENIED", "NOT_FOUND", "INVALID_ARGUMENT"):
            report.ok("accepted", "the resolver accepts the token")
            report.fail("deployment", failure.explained)
        else:
            report.fail("resolver", failure.explained)
        return
    report.ok("resolver", f"{address} serves the ResolverService")
    report.ok("accepted", "the resolver accepts the token")
    deployment = response.deployment or backend.deployment
    if response.deployment:
        report.ok("deployment", response.deployment)
    else:
        report.note("deployment", "the resolver does not name it (it is older than this shim)")
    conn_ids = sorted(connection.conn_id for connection in response.connections)
    if conn_ids:
        shown = ", ".join(conn_ids[:_LISTED_CONNECTIONS]) + (", …" if len(conn_ids) > _LISTED_CONNECTIONS else "")
        report.ok("connections", f"{len(conn_ids)} ({shown})")
    else:
        report.note("connections", f"0: no connection is linked to {deployment or 'this deployment'}; link one "
                                   "(the console's + Link Deployment) or link a connection to all deployments")


def _serves_control(backend) -> bool:
    """Whether the server answers the ConnectionService (without the token: the token is the resolver's)."""
    import grpc

    from switchboard_airflow.proto.switchboard.v1 import connection_pb2, connection_pb2_grpc

    stub = connection_pb2_grpc.ConnectionServiceStub(backend._channel)
    try:
        stub.ListConnectionTypes(connection_pb2.ListConnectionTypesRequest(), timeout=backend.timeout)
    except grpc.RpcError as error:
        return error.code() != grpc.StatusCode.UNIMPLEMENTED
    return True
