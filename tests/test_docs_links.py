"""Every relative link of the README and docs/ points at a file of the repository (and, with a
``#fragment``, at a heading of that file)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _anchors(document: Path) -> set[str]:
    """GitHub's anchors for the headings of ``document``."""
    text = FENCE.sub("", document.read_text())
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def _links(document: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", document.read_text()))


def test_the_documents_are_there() -> None:
    names = {d.name for d in DOCUMENTS}
    assert {"README.md", "tgstream.md", "chat4all-api.md", "chat4all-operations.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.name)
def test_relative_links_resolve(document: Path) -> None:
    broken = []
    for target in _links(document):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path, _, fragment = target.partition("#")
        if path.startswith("/"):
            broken.append(f"{target}: absolute; links are relative to the document")
            continue
        resolved = (document.parent / path).resolve() if path else document
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{target}: no heading #{fragment} in {resolved.name}")
    assert not broken, f"{document.relative_to(ROOT)}: {broken}"
