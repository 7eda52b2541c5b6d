"""The committed contracts are what the code serves: the OpenAPI copy and the generated gRPC
code (regenerate with `make contracts`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chat4all.contracts import openapi_document

ROOT = Path(__file__).resolve().parents[3]


def test_the_committed_openapi_document_is_current() -> None:
    committed = json.loads((ROOT / "docs" / "chat4all-openapi.json").read_text())
    assert committed == openapi_document(), "run `make contracts` and commit the result"


def test_the_generated_grpc_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(ROOT / "proto" / "chat4all" / "grpc_api" / "v1" / "messages.proto"),
        ],
        check=True,
    )
    generated = tmp_path / "chat4all" / "grpc_api" / "v1"
    committed = ROOT / "src" / "chat4all" / "grpc_api" / "v1"
    for name in ("messages_pb2.py", "messages_pb2.pyi", "messages_pb2_grpc.py"):
        assert (generated / name).read_text() == (committed / name).read_text(), (
            f"{name} is stale: run `make contracts` and commit the result"
        )


def test_every_grpc_method_is_exercised_by_some_test() -> None:
    """A new RPC without a test of its own fails here (the parity suite, events, tracing ...)."""
    from chat4all.grpc_api.v1 import messages_pb2 as pb  # noqa: PLC0415

    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["Messages"].methods}
    tests = "\n".join(p.read_text() for p in (ROOT / "tests" / "chat4all").rglob("test_*.py"))
    untested = {m for m in methods if f'"{m}"' not in tests and f".{m}(" not in tests}
    assert untested == set()
