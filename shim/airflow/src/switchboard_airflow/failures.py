"""What a failed call to the resolver means and what to do about it, in words.

The backend's log line and ``python -m switchboard_airflow check`` say the same
thing for the same failure, so both take it from here. No Airflow import.
"""

from __future__ import annotations

from typing import NamedTuple

CHECK_COMMAND = "python -m switchboard_airflow check"

#: How to mint a token, for the messages that ask for a new one.
MINT_TOKEN = "switchboard deployments token DEPLOYMENT"

START_RESOLVER = (
    "start the resolver there (`switchboard resolver`, or `switchboard dev` for everything on one address), "
    'or set backend_kwargs "address" (or SWITCHBOARD_ADDRESS) to the address it listens on'
)

TLS_SERVER = (
    "write the address as https://HOST:PORT (the system's CA certificates verify the resolver's), "
    'or set backend_kwargs "tls_ca" to the PEM file of the CA that signed it'
)

PLAINTEXT_SERVER = (
    'drop the https:// prefix and "tls_ca" from backend_kwargs, or serve TLS on the resolver '
    "(--tls-cert and --tls-key)"
)

UNTRUSTED_CERTIFICATE = (
    'set backend_kwargs "tls_ca" to the PEM file of the CA that signed the resolver\'s certificate, '
    "and use the host name the certificate names"
)


class Explained(NamedTuple):
    """A failure as a cause (what happened, with the resolver's own words) and a fix."""

    cause: str
    fix: str


def _has(details: str, *needles: str) -> bool:
    lowered = details.lower()
    return any(needle in lowered for needle in needles)


def explain(code: str, details: str, address: str, timeout: float, tls: bool) -> Explained:
    """The cause and fix of a call to the resolver at ``address`` (over TLS when ``tls``)
    that ended with gRPC status ``code`` (its name, e.g. ``"UNAUTHENTICATED"``) and ``details``.

    gRPC reports transport failures (refused connections, TLS handshakes) as
    UNAVAILABLE with grpc-core's text; that text is matched loosely and always
    quoted, so a wording this does not know still reaches the reader.
    """
    said = f"{code}: {details}" if details else code
    if code == "UNAUTHENTICATED":
        return Explained(
            f"the resolver refused the token ({said})",
            f"the token is wrong, revoked, or its deployment was deleted: mint a new one "
            f'(`{MINT_TOKEN}`) and set it as backend_kwargs "token" or "token_file", or SWITCHBOARD_TOKEN',
        )
    if code == "PERMISSION_DENIED":
        return Explained(
            f"the resolver refused this token for the deployment ({said})",
            'a deployment token resolves its own deployment only: leave backend_kwargs "deployment" empty; '
            "a user token needs a role in the workspace and the workspace policy allow_local_export",
        )
    if code == "NOT_FOUND":
        return Explained(
            f"the resolver does not know the deployment ({said})",
            'check backend_kwargs "deployment" (or SWITCHBOARD_DEPLOYMENT), or whether the deployment was deleted',
        )
    if code == "INVALID_ARGUMENT":
        return Explained(
            f"the resolver rejected the request ({said})",
            "fix the setting the message names (with a user token, backend_kwargs \"deployment\" must be "
            "workspaces/{workspace}/deployments/{deployment})",
        )
    if code == "UNIMPLEMENTED":
        return Explained(
            f"the server at {address} does not serve the ResolverService ({said})",
            "it is probably the control service alone (`switchboard control`): point the address at the "
            "resolver (`switchboard resolver`, or `switchboard dev`)",
        )
    if code == "RESOURCE_EXHAUSTED":
        return Explained(
            f"the resolver is rate-limiting this caller ({said})",
            'raise backend_kwargs "cache_ttl" so that fewer calls are made, or the resolver\'s rate limit',
        )
    if code == "DEADLINE_EXCEEDED":
        return Explained(
            f"no answer from {address} within {timeout:g} s ({said})",
            'check the address and that the network lets this host reach it; raise backend_kwargs "timeout" '
            "if the resolver is only slow",
        )
    if code == "UNAVAILABLE":
        if _has(details, "connection refused"):
            return Explained(f"nothing accepts connections at {address} ({said})", START_RESOLVER)
        if _has(details, "errors resolving", "lookup failed", "domain name not found", "dns resolution"):
            return Explained(
                f"the host of {address} cannot be resolved ({said})",
                'check the host name in backend_kwargs "address" (or SWITCHBOARD_ADDRESS)',
            )
        if _has(details, "wrong_version_number"):
            return Explained(f"the shim speaks TLS but {address} answers in plaintext ({said})", PLAINTEXT_SERVER)
        if _has(details, "certificate_verify_failed", "certificate verify failed", "verification check failed"):
            return Explained(f"the resolver's TLS certificate is not trusted ({said})", UNTRUSTED_CERTIFICATE)
        if _has(details, "socket closed") and not tls:
            return Explained(
                f"{address} closes plaintext connections; it probably expects TLS ({said})", TLS_SERVER
            )
        return Explained(
            f"the resolver at {address} is unavailable ({said})",
            "if it runs, it cannot read its database or secret store: see its log",
        )
    return Explained(f"the resolver failed ({said})", "see the resolver's log")
