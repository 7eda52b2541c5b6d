"""What a release installs: the ``[tgstream]`` extra carries every import, pinned, and a console
script without its extra names the extra instead of raising ImportError.

The release venv itself is built and exercised on a real systemd in
``tests/tgstream/systemd/test_deploy_systemd.py``; these are the fast checks of ``make check``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from opskit.extras import missing_requirements, require_extra

ROOT = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CONSTRAINTS = ROOT / "deploy" / "constraints-tgstream.txt"
OWN = {"tgstream", "opskit"}


def _declared() -> dict[str, Requirement]:
    """What ``pip install '.[tgstream]'`` is asked for: the base dependencies and the extra."""
    lines = [*PYPROJECT["dependencies"], *PYPROJECT["optional-dependencies"]["tgstream"]]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def _third_party_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for package in OWN:
        for path in (ROOT / "src" / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_of_tgstream_and_opskit_is_in_the_tgstream_extra() -> None:
    providers = metadata.packages_distributions()
    declared = _declared()
    imports = _third_party_imports()
    assert {"pyrogram", "pytgcalls", "httpx", "pydantic"} <= imports.keys(), imports
    undeclared = {}
    for module, files in imports.items():
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {sorted(files)}) is not installed in the dev venv"
        if not dists & declared.keys():
            undeclared[module] = (sorted(dists), sorted(files))
    assert not undeclared, (
        f"imported but not in [project.dependencies] or the [tgstream] extra: {undeclared}"
    )


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), f"not a pin: {line}"
            pins[canonicalize_name(name)] = version
    return pins


def test_the_constraints_pin_every_declared_requirement_within_its_bounds() -> None:
    pins = _pins()
    for name, requirement in _declared().items():
        assert name in pins, f"{name} is not pinned in {CONSTRAINTS.name}: run `make constraints`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{CONSTRAINTS.name} pins {name}=={pins[name]}, outside pyproject's {requirement}; "
            "run `make constraints`"
        )
    assert "tgstream-chat4all" not in pins


def _fake_distribution(site: Path, extra: str, requires: list[str]) -> str:
    info = site / "fake_product-1.0.dist-info"
    info.mkdir(parents=True)
    lines = [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text(
        "\n".join(["Metadata-Version: 2.1", "Name: fake-product", "Version: 1.0", *lines, ""])
    )
    return "fake-product"


def test_an_absent_extra_exits_with_the_products_code_and_names_the_install_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    dist = _fake_distribution(
        tmp_path,
        "chat4all",
        [
            'pydantic>=2; extra == "chat4all"',  # installed
            'no-such-package-for-this-test>=1; extra == "chat4all"',
            'uvloop-like-missing>=1; sys_platform == "win32" and extra == "chat4all"',
            'another-missing-one; extra == "other"',
        ],
    )
    assert missing_requirements("chat4all", dist) == ["no-such-package-for-this-test"]
    with pytest.raises(SystemExit) as stopped:
        require_extra("chat4all", "chat4all", 5, dist)
    assert stopped.value.code == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "chat4all needs the [chat4all] extra" in err
    assert "no-such-package-for-this-test" in err
    assert "pip install 'fake-product[chat4all]'" in err
    assert "Traceback" not in err


def test_a_present_extra_lets_the_command_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    dist = _fake_distribution(tmp_path, "tgstream", ['pydantic>=2; extra == "tgstream"'])
    require_extra("tgstream", "tgstream", 4, dist)  # returns: nothing missing
    assert missing_requirements("tgstream", "no-such-distribution") == []
