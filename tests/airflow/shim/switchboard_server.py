"""A real `switchboard dev` server for the shim tests, and a control-plane client.

The client uses the stubs generated into the installed shim package
(`switchboard_airflow.proto`), so the tests speak the same contract as the shim.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from switchboard_airflow.proto.switchboard.v1 import (
    connection_pb2,
    connection_pb2_grpc,
    deployment_pb2,
    deployment_pb2_grpc,
    resolver_pb2,
    resolver_pb2_grpc,
)

ROOT = Path(__file__).resolve().parents[3]


def binary() -> str:
    path = os.environ.get("SWITCHBOARD_BIN") or str(ROOT / "target" / "debug" / "switchboard")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no switchboard binary at {path}: run `cargo build -p switchboard-cli`")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`switchboard dev` (or `ROLE`: `control`, `resolver`) on a free loopback port with its own
    data dir; `extra_args` go on its command line (e.g. `--tls-cert`)."""

    def __init__(self, data_dir: Path, port: int | None = None, role: str = "dev", extra_args: tuple = ()):
        self.data_dir = Path(data_dir)
        self.role = role
        self.extra_args = tuple(extra_args)
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self) -> "Server":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [binary(), self.role, "--data-dir", str(self.data_dir), "--listen", self.address, *self.extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"switchboard {self.role} exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"switchboard {self.role} did not listen within 30 s")
        if "--tls-cert" not in self.extra_args:
            grpc.channel_ready_future(grpc.insecure_channel(self.address)).result(timeout=10)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def user_token(self, role: str = "OPERATOR", workspace: str = "acme") -> str:
        out = subprocess.run(
            [binary(), "token", "user", "--data-dir", str(self.data_dir), "--subject", "shim-tests",
             "--role", f"{workspace}={role}"],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()


def struct(values: dict) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


class Control:
    """The few control-plane calls the tests need, as an operator."""

    def __init__(self, address: str, token: str, workspace: str = "acme"):
        self.channel = grpc.insecure_channel(address)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.workspace = f"workspaces/{workspace}"
        self.connections = connection_pb2_grpc.ConnectionServiceStub(self.channel)
        self.deployments = deployment_pb2_grpc.DeploymentServiceStub(self.channel)

    def deployment(self, deployment_id: str) -> str:
        created = self.deployments.CreateDeployment(
            deployment_pb2.CreateDeploymentRequest(
                parent=self.workspace, deployment_id=deployment_id, deployment=deployment_pb2.Deployment()
            ),
            metadata=self.metadata, timeout=10,
        )
        return created.name

    def deployment_token(self, deployment: str) -> str:
        return self.issue_token(deployment).token

    def issue_token(self, deployment: str) -> deployment_pb2.DeploymentToken:
        """The token (its secret in `.token`, its resource name in `.name`)."""
        return self.deployments.CreateDeploymentToken(
            deployment_pb2.CreateDeploymentTokenRequest(parent=deployment), metadata=self.metadata, timeout=10
        )

    def revoke_token(self, name: str) -> None:
        self.deployments.RevokeDeploymentToken(
            deployment_pb2.RevokeDeploymentTokenRequest(name=name), metadata=self.metadata, timeout=10
        )

    def connection(self, conn_id: str, type_: str, links: dict[str, dict] | None = None, **fields):
        extra = fields.pop("extra", None)
        connection = connection_pb2.Connection(type=type_, **fields)
        if extra:
            connection.extra.CopyFrom(struct(extra))
        link_messages = []
        for deployment, overrides in (links or {}).items():
            overrides = dict(overrides)
            override_extra = overrides.pop("extra", None)
            message = connection_pb2.LinkOverrides(**overrides)
            if override_extra:
                message.extra.CopyFrom(struct(override_extra))
            link_messages.append(connection_pb2.Link(deployment=deployment, overrides=message))
        return self.connections.CreateConnection(
            connection_pb2.CreateConnectionRequest(
                parent=self.workspace, connection_id=conn_id, connection=connection,
                request_id=str(uuid.uuid4()), links=link_messages,
            ),
            metadata=self.metadata, timeout=10,
        )

    def update_connection(self, conn_id: str, **fields):
        current = self.connections.GetConnection(
            connection_pb2.GetConnectionRequest(name=f"{self.workspace}/connections/{conn_id}"),
            metadata=self.metadata, timeout=10,
        )
        connection = connection_pb2.Connection(name=current.name, etag=current.etag, **fields)
        request = connection_pb2.UpdateConnectionRequest(connection=connection)
        request.update_mask.paths.extend(fields)
        return self.connections.UpdateConnection(request, metadata=self.metadata, timeout=10)


def resolve_all(address: str, token: str) -> dict[str, resolver_pb2.ResolvedConnection]:
    stub = resolver_pb2_grpc.ResolverServiceStub(grpc.insecure_channel(address))
    response = stub.ListResolvedConnections(
        resolver_pb2.ListResolvedConnectionsRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10
    )
    return {c.conn_id: c for c in response.connections}
