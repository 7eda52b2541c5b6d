"""The v1 contracts are guarded: buf's STANDARD lint and no breaking change against the
committed baselines (contracts/proto-baseline.json, contracts/openapi-baseline.json), each
shown to catch a break, and a client generated from the committed OpenAPI document with no
warning sends a message through a running hub.

buf and optic come from npm into .cache/node (`make contracts-check` or `make test` installs
them); the generator is openapi-python-client (the dev extra)."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from tests.chat4all.channels.telegram_hub import telegram_of
from tests.chat4all.conftest import hub_running

ROOT = Path(__file__).resolve().parents[3]
NODE_BIN = ROOT / ".cache" / "node" / "node_modules" / ".bin"
PROTO_BASELINE = ROOT / "contracts" / "proto-baseline.json"
OPENAPI_BASELINE = ROOT / "contracts" / "openapi-baseline.json"
DOCUMENT = ROOT / "docs" / "chat4all-openapi.json"


def tool(name: str) -> Path:
    path = NODE_BIN / name
    if not path.exists():
        pytest.fail(
            f"{name} is not installed in .cache/node: run `make contracts-check` (it installs "
            "buf and optic from npm, pinned by contracts/package-lock.json)"
        )
    return path


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_proto_passes_buf_lint_with_the_standard_rules() -> None:
    linted = run(tool("buf"), "lint")
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")


def test_the_proto_keeps_every_promise_of_the_baseline() -> None:
    checked = run(tool("buf"), "breaking", "--against", PROTO_BASELINE)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_buf_breaking_refuses_a_removed_field(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    api = tmp_path / "proto" / "chat4all" / "v1" / "api.proto"
    text = api.read_text()
    removed = "  bool replayed = 2; // the REST Idempotent-Replayed header\n"
    assert removed in text
    api.write_text(text.replace(removed, ""))
    checked = run(tool("buf"), "breaking", "--against", PROTO_BASELINE, cwd=tmp_path)
    assert checked.returncode != 0
    assert "replayed" in checked.stdout


def test_the_openapi_document_keeps_every_promise_of_the_baseline() -> None:
    checked = run(tool("optic"), "diff", OPENAPI_BASELINE, DOCUMENT, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_openapi_check_refuses_a_removed_operation_and_a_new_required_field(
    tmp_path: Path,
) -> None:
    document = json.loads(DOCUMENT.read_text())
    del document["paths"]["/v1/conversations"]
    document["components"]["schemas"]["SendIn"]["required"].append("priority")
    document["components"]["schemas"]["SendIn"]["properties"]["priority"] = {"type": "integer"}
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(document))
    checked = run(tool("optic"), "diff", OPENAPI_BASELINE, changed, "--check")
    assert checked.returncode != 0
    assert "GET /v1/conversations: removed" in checked.stdout
    assert "priority" in checked.stdout


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with hub_running(tmp_path / "hub") as running:
        yield running


@pytest.fixture
def generated_client(tmp_path: Path) -> Iterator[str]:
    """A client package generated from the committed document; its name."""
    name = "chat4all_generated_client"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    generated = subprocess.run(
        [
            Path(sys.executable).parent / "openapi-python-client",
            "generate",
            "--path",
            DOCUMENT,
            "--output-path",
            tmp_path / name,
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    said = [line for line in (generated.stdout + generated.stderr).splitlines() if line.strip()]
    assert generated.returncode == 0, said
    assert said == [f"Generating {tmp_path / name}"], "the generator warned: " + "\n".join(said)
    sys.path.insert(0, str(tmp_path))
    try:
        yield name
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m.split(".")[0] == name]:
            del sys.modules[module]


async def test_a_client_generated_from_the_document_sends_a_message(
    hub: Hub, generated_client: str
) -> None:
    assert hub.admin_key is not None
    client_module = importlib.import_module(f"{generated_client}.client")
    models = importlib.import_module(f"{generated_client}.models")
    send_message = importlib.import_module(f"{generated_client}.api.messages.send_message")
    get_message = importlib.import_module(f"{generated_client}.api.messages.get_message")
    list_channels = importlib.import_module(f"{generated_client}.api.channels.list_channels")

    async with client_module.AuthenticatedClient(base_url=hub.url, token=hub.admin_key) as client:
        channels = await list_channels.asyncio(client=client)
        assert {c.name: c.accounts for c in channels.items}["telegram"] == [SIMULATOR_ACCOUNT]
        answer = await send_message.asyncio_detailed(
            client=client,
            body=models.SendIn(
                channel="telegram",
                account=SIMULATOR_ACCOUNT,
                recipient="42",
                content=models.ContentIn(text="from a generated client"),
            ),
            idempotency_key="generated-1",
        )
        assert answer.status_code == 202
        sent = answer.parsed
        assert isinstance(sent, models.MessageOut)
        assert sent.content.text == "from a generated client"
        deadline = time.monotonic() + 10
        while "from a generated client" not in telegram_of(hub).texts("42"):
            assert time.monotonic() < deadline, "the message never reached the simulator"
            await asyncio.sleep(0.02)
        got = await get_message.asyncio(client=client, message_id=sent.id)
        assert isinstance(got, models.MessageOut)
        assert got.id == sent.id
        refused = await send_message.asyncio_detailed(
            client=client,
            body=models.SendIn(
                channel="fax",
                account=SIMULATOR_ACCOUNT,
                recipient="42",
                content=models.ContentIn(text="x"),
            ),
        )
        assert refused.status_code == 422
        assert isinstance(refused.parsed, models.ErrorBody)
        assert refused.parsed.error.field == "channel"
