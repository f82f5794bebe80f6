"""Builds switchboard-airflow, generating the gRPC stubs from the repository's proto/.

The stubs are never committed: every build runs grpcio-tools' protoc over
``proto/switchboard/v1/*.proto`` and writes the modules into the package as
``switchboard_airflow.proto.switchboard.v1``. The protos are found at
``$SWITCHBOARD_PROTO_DIR``, ``../../proto`` (this directory inside the
repository) or ``./proto`` (an sdist, which carries a copy).
"""

import os
import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
PACKAGE = "switchboard_airflow"
STUBS = "proto"  # switchboard_airflow.proto.switchboard.v1.*_pb2


def proto_root():
    candidates = [os.environ.get("SWITCHBOARD_PROTO_DIR"), HERE.parent.parent / "proto", HERE / "proto"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "switchboard" / "v1" / "resolver.proto").is_file():
            return Path(candidate).resolve()
    raise SystemExit(
        "switchboard-airflow: proto/switchboard/v1/resolver.proto not found; build from the "
        "repository (shim/airflow) or set SWITCHBOARD_PROTO_DIR"
    )


def generate_stubs(package_dir):
    """Writes <package_dir>/proto/switchboard/v1/*_pb2{,_grpc}.py from the protos."""
    import grpc_tools
    from grpc_tools import protoc

    root = proto_root()
    protos = sorted(str(p) for p in (root / "switchboard" / "v1").glob("*.proto"))
    out = Path(package_dir) / STUBS
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"switchboard-airflow: protoc failed on {root}")
    # protoc writes imports relative to the proto root (`from switchboard.v1 import …`);
    # point them into this package so nothing claims the top-level name `switchboard`.
    prefix = f"{PACKAGE}.{STUBS}.switchboard"
    for module in out.rglob("*.py"):
        text = module.read_text()
        fixed = re.sub(r"^from switchboard(\.| import)", rf"from {prefix}\1", text, flags=re.M)
        fixed = re.sub(r"^import switchboard\.", f"import {prefix}.", fixed, flags=re.M)
        module.write_text(fixed)
    for directory in [out, out / "switchboard", out / "switchboard" / "v1"]:
        (directory / "__init__.py").write_text('"""Generated from proto/ when the package is built."""\n')


class BuildPyWithStubs(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            generate_stubs(HERE / "src" / PACKAGE)
        else:
            generate_stubs(Path(self.build_lib) / PACKAGE)


class SdistWithProtos(sdist):
    """Carries a copy of the protos, so an sdist builds outside the repository."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        shutil.copytree(proto_root() / "switchboard", Path(base_dir) / "proto" / "switchboard")


setup(cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProtos})
