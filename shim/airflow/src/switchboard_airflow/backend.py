"""The Switchboard secrets backend for Airflow 2.7+ and 3.x.

Each Airflow process asks the Switchboard resolver for its Deployment's
effective connections: one ``ListResolvedConnections`` call fills an
in-process cache that is refreshed after ``cache_ttl`` seconds, and
``get_conn_value`` answers from it. Anything the resolver does not know, and
every failure to reach it, returns None so that Airflow goes on to the next
backend (environment variables, then the metastore): a secrets backend must
never be the reason a task crashes. A failure is logged once, at WARNING, with
its cause and fix (see ``failures``), and the recovery at INFO.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, NamedTuple
from urllib.parse import quote

try:  # Airflow 2.x and 3.x with airflow-core installed
    from airflow.secrets.base_secrets import BaseSecretsBackend
except ImportError:  # pragma: no cover - a Task SDK-only Airflow 3 worker
    from airflow.sdk.bases.secrets_backend import BaseSecretsBackend

import grpc
from google.protobuf import json_format

from switchboard_airflow.failures import CHECK_COMMAND, Explained, explain
from switchboard_airflow.proto.switchboard.v1 import resolver_pb2, resolver_pb2_grpc

log = logging.getLogger(__name__)

#: Provider package that supplies the hook for each catalog conn_type (keys lower-cased).
#: The resolver returns conn_type only; this is the catalog's mapping, for the hint below.
PROVIDER_PACKAGES = {
    "postgres": "apache-airflow-providers-postgres",
    "snowflake": "apache-airflow-providers-snowflake",
    "redshift": "apache-airflow-providers-amazon",
    "databricks": "apache-airflow-providers-databricks",
    "google_cloud_platform": "apache-airflow-providers-google",
    "fivetran": "airflow-provider-fivetran-async",
}

DEFAULT_TIMEOUT = 5.0
DEFAULT_CACHE_TTL = 30.0
DEFAULT_RETRY_INTERVAL = 5.0
DEFAULT_MAX_STALE = 900.0

# Codes after which values held from before the failure stay usable (the
# resolver is down or slow); after any other code (a revoked token, a
# deployment that was deleted) they are dropped.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}


# grpc shares connections (subchannels) between the channels of a process to the
# same address. A child forked after the parent connected would find the parent's
# connection and fail on its socket ("Wrong file descriptor generation"); a pool
# of its own per channel makes the child's channel connect afresh.
_CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)

# Connection values whose secrets were handed to the masker, remembered per process.
_MAX_ANNOUNCED = 4096

# The failure being reported per (resolver address, deployment), for the whole
# process: Airflow 3 workers before 3.3 built a new backend for every lookup (3.3's
# Task SDK keeps one per process), and an outage is still logged once, not once per lookup. Value: the status code of
# the failure, so that a different failure (the resolver is back but refuses
# the token) is logged too.
_OUTAGES: dict[tuple[str, str], str] = {}
_OUTAGES_LOCK = threading.Lock()


def _forget_outages_in_child() -> None:
    # A forked child (Airflow 2's task runner, Celery prefork) logs to its own task
    # log, so it reports an outage afresh; the lock may have been held at fork.
    global _OUTAGES_LOCK
    _OUTAGES.clear()
    _OUTAGES_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX, where Airflow runs
    os.register_at_fork(after_in_child=_forget_outages_in_child)


class _Entry(NamedTuple):
    """One prefetched connection. A ``ResolvedConnection`` message has the same
    attributes and stands in for an entry on the uncached path."""

    conn_id: str
    conn_type: str
    airflow_json: str
    password: str
    extra: Any  # google.protobuf.Struct, turned into a dict only when masking


class _Failure(Exception):
    """A call that did not get an answer: ``code`` names the kind (a gRPC status
    name, or one of the shim's own for settings), ``explained`` says why and what to do."""

    def __init__(self, code: str, explained: Explained, transient: bool):
        super().__init__(explained.cause)
        self.code = code
        self.explained = explained
        self.transient = transient


def _entry(resolved) -> _Entry:
    return _Entry(resolved.conn_id, resolved.conn_type, resolved.airflow_json, resolved.password, resolved.extra)


def _number(value: Any, name: str, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"switchboard: backend_kwargs {name} must be a number of seconds, not {value!r}")
    if number < 0:
        raise ValueError(f"switchboard: backend_kwargs {name} must not be negative")
    return number


def _find_mask_secret() -> Callable[..., None] | None:
    """Airflow's mask_secret: 3.1+, then 3.0, then 2.x locations."""
    import warnings

    candidates = [
        "airflow.sdk.log",
        "airflow.sdk.execution_time.secrets_masker",
        "airflow.utils.log.secrets_masker",
    ]
    for module_name in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = __import__(module_name, fromlist=["mask_secret"])
            function = getattr(module, "mask_secret", None)
        except Exception:
            continue
        if function is not None:
            return function
    return None


def _installed_hook_conn_types():
    """The conn_types some installed provider supplies a hook for, or None if unknowable."""
    import warnings

    candidates = [
        ("airflow.sdk.providers_manager_runtime", "ProvidersManagerTaskRuntime"),  # Airflow 3.2+
        ("airflow.providers_manager", "ProvidersManager"),
    ]
    for module_name, class_name in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = __import__(module_name, fromlist=[class_name])
                return getattr(module, class_name)().hooks
        except Exception:
            continue
    return None


class SwitchboardBackend(BaseSecretsBackend):
    """Reads Airflow connections from the Switchboard resolver.

    Configure it with ``[secrets] backend = switchboard_airflow.SwitchboardBackend``
    (and, on Airflow 3, ``[workers] secrets_backend`` too) and ``backend_kwargs``:

    :param address: resolver ``host:port`` (default: ``$SWITCHBOARD_ADDRESS``).
        An ``https://`` prefix turns TLS on with the system's CA certificates.
    :param token: the Deployment token (default: ``$SWITCHBOARD_TOKEN``).
    :param token_file: a file holding the token, re-read whenever it changes, so a
        mounted Kubernetes Secret can be rotated (default: ``$SWITCHBOARD_TOKEN_FILE``).
    :param tls_ca: PEM file of the CA that signed the resolver's certificate; TLS when set.
    :param timeout: seconds per call to the resolver (default 5).
    :param cache_ttl: seconds the prefetched connections are served before the next
        ``ListResolvedConnections`` (default 30); 0 resolves every lookup with one
        ``ResolveConnection`` call.
    :param deployment: ``workspaces/{w}/deployments/{d}``, only needed with a user
        token (local development); empty means the token's own Deployment.
    :param retry_interval: seconds between attempts while the resolver is failing (default 5).
    :param max_stale: seconds values held from before an outage are still served while
        the resolver is unreachable (default 900).
    """

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        token_file: str | None = None,
        tls_ca: str | None = None,
        timeout: float | None = None,
        cache_ttl: float | None = None,
        deployment: str | None = None,
        retry_interval: float | None = None,
        max_stale: float | None = None,
        **kwargs: Any,
    ):
        super().__init__()
        # Airflow 3 passes team_name (multi-team); a Deployment token already names the scope.
        self.team_name = kwargs.pop("team_name", None)
        if kwargs:
            log.warning("switchboard: ignoring unknown backend_kwargs %s", ", ".join(sorted(kwargs)))

        #: Where the address and the token come from, for ``check`` (never the token itself).
        self.address_source = "backend_kwargs address" if address else "SWITCHBOARD_ADDRESS"
        address = (address or os.environ.get("SWITCHBOARD_ADDRESS") or "").strip()
        self._tls = bool(tls_ca)
        for scheme, tls in (("https://", True), ("http://", False), ("grpc://", False)):
            if address.startswith(scheme):
                address, self._tls = address[len(scheme) :], self._tls or tls
        self.address = address.rstrip("/")
        self._static_token = (token or os.environ.get("SWITCHBOARD_TOKEN") or "").strip()
        self.token_file = token_file or (None if token else os.environ.get("SWITCHBOARD_TOKEN_FILE"))
        if self.token_file:
            self.token_source = f"{'backend_kwargs token_file' if token_file else 'SWITCHBOARD_TOKEN_FILE'} " \
                                f"{self.token_file}"
        else:
            self.token_source = "backend_kwargs token" if token else "SWITCHBOARD_TOKEN"
        self.tls_ca = tls_ca
        self.timeout = _number(timeout, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
        self.cache_ttl = _number(cache_ttl, "cache_ttl", DEFAULT_CACHE_TTL)
        self.retry_interval = _number(retry_interval, "retry_interval", DEFAULT_RETRY_INTERVAL)
        self.max_stale = _number(max_stale, "max_stale", DEFAULT_MAX_STALE)
        self.deployment = deployment or os.environ.get("SWITCHBOARD_DEPLOYMENT") or ""

        self._token_key: tuple | None = None
        self._file_token = ""
        self._metadata_token = ""  # the token self._metadata was built for
        self._metadata: tuple = ()
        self._entries: dict[str, _Entry] | None = None  # lower-cased conn_id -> entry
        self._expires = 0.0  # monotonic time the entries go stale
        self._fetched = 0.0  # monotonic time of the last successful fetch
        self._retry_at = 0.0  # no call before this while failing
        self._mask: Callable[..., None] | None | bool = False  # False: not looked up yet
        self._hook_types: Any = False
        self._reset_process_state(os.getpid())

    # Per-process state: a gRPC channel must not cross a fork, and a lock held by
    # another thread at fork time would never be released in the child.
    def _reset_process_state(self, pid: int) -> None:
        self._pid = pid
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: resolver_pb2_grpc.ResolverServiceStub | None = None
        self._announced: set[str] = set()  # airflow_json values whose secrets are masked
        self._hinted_types: set[str] = set()

    # ---- Airflow's interface -------------------------------------------------

    def get_conn_value(self, conn_id: str, team_name: str | None = None, **kwargs: Any) -> str | None:
        """The connection's Airflow JSON, or None when Switchboard has nothing for ``conn_id``."""
        try:
            if os.getpid() != self._pid:
                self._reset_process_state(os.getpid())
            key = conn_id.lower()
            entries = self._entries
            if entries is not None and time.monotonic() < self._expires:
                entry = entries.get(key)
            elif self.cache_ttl > 0:
                entry = self._refresh_then_get(key)
            else:
                entry = self._resolve_one(conn_id)
            if entry is None:
                return None
            value = entry.airflow_json
            if value not in self._announced:
                self._announce(entry, value)
            return value
        except Exception as error:  # never let a lookup crash the caller
            cause = f"unexpected {type(error).__name__} in the shim: {error}"
            self._report(_Failure("UNEXPECTED", Explained(cause, "report it with this traceback"), True),
                         exc_info=True)
            return None

    def get_connection(self, conn_id: str, team_name: str | None = None, **kwargs: Any):
        """The connection as the ``Connection`` class Airflow uses in this process, or None.

        What the base class does (``get_conn_value``, then ``deserialize_connection``),
        without Airflow 3's per-call signature inspection of ``get_conn_value``.
        """
        value = self.get_conn_value(conn_id)
        if value:
            return self.deserialize_connection(conn_id=conn_id, value=value)
        return None

    def get_variable(self, key: str, team_name: str | None = None, **kwargs: Any) -> str | None:
        """Variables are not served by Switchboard; Airflow goes on to its other backends."""
        return None

    def get_config(self, key: str) -> str | None:
        return None

    # ---- resolver calls ------------------------------------------------------

    def _refresh_then_get(self, key: str) -> _Entry | None:
        with self._lock:
            now = time.monotonic()
            if self._entries is not None and now < self._expires:
                return self._entries.get(key)  # another thread refreshed meanwhile
            if now >= self._retry_at:
                try:
                    response = self._call(
                        "ListResolvedConnections",
                        resolver_pb2.ListResolvedConnectionsRequest(deployment=self.deployment),
                    )
                except _Failure as failure:
                    self._failed(failure)
                else:
                    self._entries = {c.conn_id.lower(): _entry(c) for c in response.connections}
                    self._fetched = time.monotonic()
                    self._expires = self._fetched + self.cache_ttl
                    self._recovered()
                    return self._entries.get(key)
            # Failing: serve what was held before the outage, for a while.
            if self._entries is not None and time.monotonic() - self._fetched < self.max_stale:
                return self._entries.get(key)
            return None

    def _resolve_one(self, conn_id: str) -> _Entry | None:
        if time.monotonic() < self._retry_at:
            return None
        try:
            resolved = self._call(
                "ResolveConnection",
                resolver_pb2.ResolveConnectionRequest(deployment=self.deployment, conn_id=conn_id),
            )
        except _Failure as failure:
            with self._lock:
                self._failed(failure)
            return None
        self._recovered()
        return resolved  # None when not linked; else it has the attributes of an _Entry

    def _call(self, method: str, request):
        if not self.address:
            raise _Failure("NO_ADDRESS", Explained(
                "no resolver address is set", 'set backend_kwargs "address" or SWITCHBOARD_ADDRESS'), False)
        token = self._token()
        if not token:
            raise _Failure("NO_TOKEN", Explained(
                "no token is set",
                'set backend_kwargs "token" or "token_file", or SWITCHBOARD_TOKEN or SWITCHBOARD_TOKEN_FILE'), False)
        if token != self._metadata_token:
            self._metadata = (("authorization", f"Bearer {token}"),)
            self._metadata_token = token
        stub = self._stub or self._connect()
        try:
            return getattr(stub, method)(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
            details = (error.details() if hasattr(error, "details") else str(error)) or ""
            if code == grpc.StatusCode.UNAVAILABLE:
                # A channel that failed to connect waits out grpc's reconnect backoff (up
                # to 120 s) and fails every call meanwhile; the next attempt, after
                # retry_interval, gets a fresh channel that connects at once. Calls still
                # running on this one keep it alive until they end.
                self._stub = None
                self._channel = None
            if code == grpc.StatusCode.NOT_FOUND and method == "ResolveConnection":
                return None  # the conn_id is not linked: an answer, not a failure
            explained = explain(code.name, details, self.address, self.timeout, self._tls)
            raise _Failure(code.name, explained, code in _TRANSIENT)

    def _connect(self) -> resolver_pb2_grpc.ResolverServiceStub:
        if self._tls:
            root = None
            if self.tls_ca:
                try:
                    with open(self.tls_ca, "rb") as handle:
                        root = handle.read()
                except OSError as error:
                    raise _Failure("TLS_CA", Explained(
                        f"cannot read tls_ca {self.tls_ca}: {error.strerror}",
                        'set backend_kwargs "tls_ca" to a readable PEM file'), False)
            credentials = grpc.ssl_channel_credentials(root_certificates=root)
            self._channel = grpc.secure_channel(self.address, credentials, options=_CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
        self._stub = resolver_pb2_grpc.ResolverServiceStub(self._channel)
        return self._stub

    def _token(self) -> str:
        if not self.token_file:
            return self._static_token
        try:
            stat = os.stat(self.token_file)  # follows the ..data symlink of a mounted Secret
            key = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if key != self._token_key:
                with open(self.token_file, encoding="utf-8") as handle:
                    self._file_token = handle.read().strip()
                self._token_key = key
        except OSError as error:
            raise _Failure("TOKEN_FILE", Explained(
                f"cannot read token_file {self.token_file}: {error.strerror}",
                "mount the token there, or fix backend_kwargs \"token_file\" (or SWITCHBOARD_TOKEN_FILE)"), True)
        return self._file_token

    # ---- reporting -----------------------------------------------------------

    def _failed(self, failure: _Failure) -> None:
        """Called with the lock held."""
        self._retry_at = time.monotonic() + self.retry_interval
        self._expires = 0.0
        if not failure.transient:
            self._entries = None  # a refused token must not keep serving secrets
        self._report(failure)

    def _report(self, failure: _Failure, exc_info: bool = False) -> None:
        """Logs a failure once per outage at WARNING, where Airflow shows its loggers'
        records (the task log, the console of Airflow's commands)."""
        key = (self.address, self.deployment)
        with _OUTAGES_LOCK:
            known = _OUTAGES.get(key) == failure.code
            _OUTAGES[key] = failure.code
        if known:
            log.debug("switchboard: resolver still failing: %s", failure.explained.cause)
            return
        if self._entries is not None and time.monotonic() - self._fetched < self.max_stale:
            meanwhile = "the connections fetched before are served for up to max_stale, other lookups fall through"
        else:
            meanwhile = "lookups fall through"
        log.warning(
            "switchboard: cannot get connections from the resolver at %s: %s. To fix: %s. Until then %s to the "
            "next secrets backend (environment variables, metastore); `%s` diagnoses the settings",
            self.address or "<unset>",
            failure.explained.cause,
            failure.explained.fix,
            meanwhile,
            CHECK_COMMAND,
            exc_info=exc_info,
        )

    def _recovered(self) -> None:
        self._retry_at = 0.0
        key = (self.address, self.deployment)
        if key in _OUTAGES:  # a dict lookup on every successful call; the lock only on recovery
            with _OUTAGES_LOCK:
                recovered = _OUTAGES.pop(key, None) is not None
            if recovered:
                log.info("switchboard: the resolver at %s answers again; connections come from Switchboard",
                         self.address)

    def _announce(self, entry: _Entry, value: str) -> None:
        """Once per connection value and process: register its secrets with Airflow's masker
        (again when they change) and say which provider package to install if no hook
        serves its conn_type."""
        if self._mask is False:
            self._mask = _find_mask_secret()
        mask = self._mask
        if mask:
            if entry.password:
                mask(entry.password)
                if quote(entry.password) != entry.password:
                    mask(quote(entry.password))
            # The masker hides the values of sensitive keys (private_key*, keyfile_dict, …);
            # values shorter than its minimum are never masked, so leave them out.
            extra = json_format.MessageToDict(entry.extra)
            maskable = {k: v for k, v in extra.items() if not (isinstance(v, str) and len(v) < 5)}
            if maskable:
                mask(maskable)
        if len(self._announced) >= _MAX_ANNOUNCED:
            self._announced.clear()  # masking again is harmless; the set must not grow forever
        self._announced.add(value)
        self._hint_provider(entry)

    def _hint_provider(self, entry: _Entry) -> None:
        conn_type = entry.conn_type
        if not conn_type or conn_type in self._hinted_types:
            return
        self._hinted_types.add(conn_type)
        if self._hook_types is False:
            self._hook_types = _installed_hook_conn_types()
        hooks = self._hook_types
        if hooks is None or conn_type in hooks:
            return
        package = PROVIDER_PACKAGES.get(conn_type.lower())
        if package:
            log.warning(
                "switchboard: connection %r has conn_type %r but no installed provider supplies a hook for it; "
                "add %s to requirements.txt",
                entry.conn_id,
                conn_type,
                package,
            )
        else:
            log.warning(
                "switchboard: connection %r has conn_type %r but no installed provider supplies a hook for it; "
                "add the provider package that does to requirements.txt",
                entry.conn_id,
                conn_type,
            )
