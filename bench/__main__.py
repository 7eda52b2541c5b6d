"""``python -m bench``: run every benchmark, print the table, rewrite docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import tgstream_bench
from bench.common import provenance

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ffmpeg = subprocess.run(
        ["ffmpeg", "-version"], capture_output=True, text=True, check=False
    ).stdout.split("\n", 1)[0]
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {ffmpeg}; "
        "a shared, noisy machine: compare ratios from the same run, not absolute figures"
    )


def write_section(title: str, body: str) -> None:
    """Replace the ``## title`` section of docs/benchmarks.md in place (or add it at the end),
    keep the others."""
    header = (
        "# Benchmarks\n\nFigures are rewritten by `make bench`; each section says "
        "when and how it was produced.\n\n"
    )
    text = DOC.read_text() if DOC.exists() else header
    sections = text.split("\n## ")
    head, rest = sections[0], sections[1:]
    new = f"{title}\n\n{body.strip()}\n"
    # A rewritten section keeps its place (a smaller diff); a new one goes last.
    titles = [sec.split("\n", 1)[0] for sec in rest]
    if title in titles:
        rest[titles.index(title)] = new
    else:
        rest.append(new)
    ordered = sorted(rest, key=lambda sec: sec.split("\n", 1)[0] != "tgstream")
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(head.rstrip() + "\n\n" + "\n## ".join(["", *ordered]).lstrip("\n") + "\n")
    print(f"wrote the {title!r} section of {DOC}", file=sys.stderr)


def main() -> int:
    if sys.argv[1:] == ["chat4all"]:
        from bench import chat4all_bench

        write_section("chat4all", chat4all_bench.run(machine()))
        return 0
    if sys.argv[1:] == ["streams"]:
        from bench import streams_bench

        write_section("chat4all: live streams per API process", streams_bench.run(machine()))
        return 0
    if sys.argv[1:] == ["scale-out"]:
        from bench import scale_out_bench

        write_section("chat4all: scale-out against embedded", scale_out_bench.run(machine()))
        return 0
    if sys.argv[1:] == ["channels"]:
        from bench import channels_bench

        write_section("chat4all channels", channels_bench.run(machine()))
        return 0
    if sys.argv[1:] == ["loaded"]:
        from bench import loaded_suite

        write_section("tgstream tests on a loaded machine", loaded_suite.run(machine()))
        return 0
    if sys.argv[1:] == ["publisher"]:
        root = Path(os.environ.get("BENCH_MEDIA", tempfile.mkdtemp(prefix="tgstream-bench-")))
        before = os.environ.get("TGSTREAM_BENCH_BEFORE")  # another tree's src, run beside
        table = tgstream_bench.publisher_only(root, before)
        print(table)
        command = "`python -m bench publisher` (the publisher rows of `make bench` alone)"
        if before:
            command += f", `TGSTREAM_BENCH_BEFORE={before}` run beside this tree in turns"
        write_section(
            "tgstream publisher",
            f"{provenance(command, machine())}\n\n{table}\n\n{tgstream_bench.PUBLISHER_NOTES}",
        )
        return 0
    if sys.argv[1:] == ["systemd"]:
        from bench import systemd_bench

        write_section("systemd restarts", systemd_bench.run(machine()))
        return 0
    root = Path(os.environ.get("BENCH_MEDIA", tempfile.mkdtemp(prefix="tgstream-bench-")))
    root.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["raw"]:
        # Only the raw path's CPU (ours beside py-tgcalls', per part): ~3 minutes.
        tgstream_bench.prepare_media(root)
        before = os.environ.get("TGSTREAM_BENCH_BEFORE")  # another tree's src, run beside
        table = tgstream_bench.raw_split_table(
            tgstream_bench.cpu_raw_vs_pytgcalls(root, before=before)
        )
        print(table)
        command = "`python -m bench raw`"
        if before:
            command += f", `TGSTREAM_BENCH_BEFORE={before}` run beside this tree in turns"
        write_section(
            "tgstream raw path (telegram)",
            f"{provenance(command, machine())}\n\n{table}\n\n{tgstream_bench.RAW_NOTES}",
        )
        return 0
    results = tgstream_bench.run_all(root)
    # Kept beside the media, so a failing report does not cost the whole run.
    (root / "results.json").write_text(json.dumps(results, indent=1, default=repr))
    table = tgstream_bench.report(results)
    print(table)
    write_section(
        "tgstream",
        f"{provenance('`make bench` (`python -m bench`)', machine())}\n\n"
        f"{table}\n\n{tgstream_bench.NOTES}",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
