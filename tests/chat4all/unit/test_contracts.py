"""The committed contracts are what the code serves: the OpenAPI copy and the generated gRPC
code (regenerate with `make contracts`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from chat4all.contracts import openapi_document
from chat4all.entrypoints.error_codes import ERROR_ANSWERS, ErrorAnswer, answer_for
from chat4all.errors import (
    AuthError,
    Chat4AllError,
    IdempotencyConflict,
    IdempotencyInFlight,
    InvalidRequest,
    NotFound,
    PermanentDelivery,
    PermissionDenied,
    RateLimited,
    StoreUnavailable,
    UploadConflict,
)

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
            str(ROOT / "proto" / "chat4all" / "v1" / "api.proto"),
        ],
        check=True,
    )
    generated = tmp_path / "chat4all" / "v1"
    committed = ROOT / "src" / "chat4all" / "v1"
    for name in ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py"):
        assert (generated / name).read_text() == (committed / name).read_text(), (
            f"{name} is stale: run `make contracts` and commit the result"
        )


def test_every_grpc_method_is_exercised_by_some_test() -> None:
    """A new RPC without a test of its own fails here (the parity suite, events, tracing ...)."""
    from chat4all.v1 import api_pb2 as pb  # noqa: PLC0415

    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["Chat4AllService"].methods}
    tests = "\n".join(p.read_text() for p in (ROOT / "tests" / "chat4all").rglob("test_*.py"))
    untested = {m for m in methods if f'"{m}"' not in tests and f".{m}(" not in tests}
    assert untested == set()


def test_every_error_class_has_one_row_in_the_answer_table() -> None:
    """REST and gRPC answer every domain error from one table; a new error class is a decision
    (which status, which code), so it fails here until it has its row."""

    def every(cls: type[Chat4AllError]) -> set[type[Chat4AllError]]:
        return {cls}.union(*(every(sub) for sub in cls.__subclasses__()))

    classes = every(Chat4AllError)
    assert len(classes) >= 12  # the walk reaches the subclasses' subclasses
    assert {c.__name__ for c in classes - set(ERROR_ANSWERS)} == set()
    assert {c.__name__ for c in set(ERROR_ANSWERS) - classes} == set()


@pytest.mark.parametrize(
    ("error", "status", "code", "grpc_code"),
    [
        (InvalidRequest("x", "f"), 422, "invalid_argument", grpc.StatusCode.INVALID_ARGUMENT),
        (
            IdempotencyConflict("x"),
            422,
            "idempotency_conflict",
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (IdempotencyInFlight("x"), 409, "idempotency_in_flight", grpc.StatusCode.ALREADY_EXISTS),
        (NotFound("x"), 404, "not_found", grpc.StatusCode.NOT_FOUND),
        (UploadConflict("x"), 409, "upload_conflict", grpc.StatusCode.ABORTED),
        (AuthError("x"), 401, "unauthenticated", grpc.StatusCode.UNAUTHENTICATED),
        (PermissionDenied("x"), 403, "permission_denied", grpc.StatusCode.PERMISSION_DENIED),
        (RateLimited("x", 1.0), 429, "rate_limited", grpc.StatusCode.RESOURCE_EXHAUSTED),
        (StoreUnavailable("x"), 503, "unavailable", grpc.StatusCode.UNAVAILABLE),
        (PermanentDelivery("x"), 500, "internal", grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_answers_one_status_and_one_code(
    error: Chat4AllError, status: int, code: str, grpc_code: grpc.StatusCode
) -> None:
    assert answer_for(error) == ErrorAnswer(status, code, grpc_code)


def test_no_contract_lists_the_channels() -> None:
    """A new channel changes no contract: neither document enumerates channel names."""
    from chat4all.v1 import api_pb2 as pb  # noqa: PLC0415

    # The channels the hub carries or will (and the tests' echo plugin), spelled out: the
    # registry may not know them all.
    channels = {"telegram", "whatsapp", "messenger", "instagram", "echo"}

    def enums(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "enum" and isinstance(value, list):
                    yield from (str(v).lower() for v in value)
                else:
                    yield from enums(value)
        elif isinstance(node, list):
            for item in node:
                yield from enums(item)

    committed = json.loads((ROOT / "docs" / "chat4all-openapi.json").read_text())
    assert channels.isdisjoint(enums(committed))
    proto_values = {
        value.name.lower().removeprefix("channel_")
        for enum in pb.DESCRIPTOR.enum_types_by_name.values()
        for value in enum.values
    }
    assert channels.isdisjoint(proto_values)
