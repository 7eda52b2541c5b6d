"""The ``tgstream`` command as an operator meets it: exit codes, messages, the check table."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path

from tests.tgstream.harness import free_port, run_cli, start_service

SECRET_KEY = "live_9f8e7d6c5b4a39281706"


def test_check_passes_on_a_good_setup(tmp_path: Path, media: Path, media_url: str) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/red.mp4\n{media_url}/green.mp4\n{media}\n")
    result = run_cli(
        tmp_path, {"PLAYLIST_FILE": str(playlist), "PREVIEW_PORT": str(free_port())}, "check"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    for row in ("ffmpeg", "ffprobe", "yt-dlp", "settings", "FFMPEG_ARGS", "output preview"):
        assert row in result.stdout
    assert "0 checks failed" in result.stdout
    assert "Traceback" not in result.stderr


def test_check_fails_and_names_every_problem(tmp_path: Path, media: Path, media_url: str) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/red.mp4\nmissing.mp4\n{media_url}/gone.mp4\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            tmp_path,
            {
                "PLAYLIST_FILE": str(playlist),
                "PREVIEW_PORT": str(port),
                "FFMPEG_ARGS": "-b:v 1M -i other.mp4",
            },
            "check",
        )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "-i" in out and "adds an input" in out
    assert "line 2" in out and "file not found" in out
    assert "gone.mp4" in out and "not_found" in out
    assert "unavailable" in out  # the preview port is taken
    assert "Traceback" not in result.stderr


def test_playlist_command_lists_items_and_the_mode(tmp_path: Path, media: Path) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/red.mp4\n{media}/blue-360p.mp4\n")
    result = run_cli(tmp_path, {"PLAYLIST_FILE": str(playlist)}, "playlist")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "red.mp4" in result.stdout and "blue-360p.mp4" in result.stdout
    assert "remux" in result.stdout and "transcode" in result.stdout


def test_invalid_setting_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = run_cli(tmp_path, {"VIDEO_QUALITY": "999p"}, "run")
    assert result.returncode == 2
    assert "VIDEO_QUALITY" in result.stderr and "999p" in result.stderr
    assert "Traceback" not in result.stderr


def test_rtmp_output_without_url_exits_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path, {"OUTPUT": "rtmp"}, "run")
    assert result.returncode == 2
    assert "RTMP_URL" in result.stderr


def test_env_file_is_read_and_invalid_lines_are_skipped_with_their_number(
    tmp_path: Path, media: Path
) -> None:
    playlist = tmp_path / "list.txt"
    playlist.write_text(f"# comment\n{media}/red.mp4\nftp://example.org/x.mp4\nnope.mp4\n")
    (tmp_path / ".env").write_text(
        f"PLAYLIST_FILE={playlist}\nLOOP=0\nOUTPUT=preview\nPREVIEW_PORT={free_port()}\n"
    )
    result = run_cli(tmp_path, {}, "run", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "line 3: unsupported URL scheme 'ftp'" in result.stderr
    assert "line 4: file not found" in result.stderr
    assert "now playing" in result.stderr


def test_an_unreadable_env_file_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"LOOP=0\n\x96\xff\x00\x13garbage\n")
    for command in ("run", "check", "playlist"):
        result = run_cli(tmp_path, {}, command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert ".env line 2: not UTF-8 text" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_an_env_file_named_but_missing_exits_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path, {}, "run", "--env-file", "prod.env")
    assert result.returncode == 2
    assert "--env-file prod.env: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_all_lines_invalid_exits_3(tmp_path: Path) -> None:
    playlist = tmp_path / "list.txt"
    playlist.write_text("nope.mp4\nftp://x/y\n")
    result = run_cli(tmp_path, {"PLAYLIST_FILE": str(playlist)}, "run")
    assert result.returncode == 3
    assert "all 2 entries are invalid" in result.stderr


def test_preview_port_taken_exits_5(tmp_path: Path, media: Path) -> None:
    playlist = tmp_path / "list.txt"
    playlist.write_text(f"{media}/red.mp4\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_cli(
            tmp_path,
            {"PLAYLIST_FILE": str(playlist), "PREVIEW_PORT": str(busy.getsockname()[1])},
            "run",
        )
    assert result.returncode == 5
    assert "PREVIEW_PORT" in result.stderr


def _hang_up_on_everyone(server: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the test closed the socket
        while True:
            conn, _ = server.accept()
            conn.close()


def test_the_rtmp_stream_key_never_reaches_the_log(tmp_path: Path, media: Path) -> None:
    playlist = tmp_path / "list.txt"
    playlist.write_text(f"{media}/red.mp4\n")
    with socket.socket() as not_rtmp:  # accepts, then hangs up: ffmpeg fails naming the URL
        not_rtmp.bind(("127.0.0.1", 0))
        not_rtmp.listen()
        url = f"rtmp://127.0.0.1:{not_rtmp.getsockname()[1]}/live/{SECRET_KEY}"
        hang_up = threading.Thread(target=_hang_up_on_everyone, args=(not_rtmp,), daemon=True)
        hang_up.start()
        service = start_service(
            tmp_path,
            {
                "PLAYLIST_FILE": str(playlist),
                "OUTPUT": "rtmp",
                "RTMP_URL": url,
                "LOG_LEVEL": "DEBUG",
            },
        )
        service.wait_for(r"attempt 2 failed", 30)
        assert service.terminate() == 0
    assert SECRET_KEY not in service.log
    failed = [line for line in service.lines if "attempt 1 failed" in line]
    assert failed, service.log
    assert f"/live/***{SECRET_KEY[-4:]}" in failed[0]  # the host and app stay readable


def test_json_logs_parse_line_by_line(tmp_path: Path, media: Path) -> None:
    playlist = tmp_path / "list.txt"
    playlist.write_text(f"{media}/red.mp4\n")
    result = run_cli(
        tmp_path,
        {
            "PLAYLIST_FILE": str(playlist),
            "LOOP": "0",
            "LOG_FORMAT": "json",
            "PREVIEW_PORT": str(free_port()),
        },
        "run",
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records
    assert all({"ts", "level", "component", "message"} <= set(r) for r in records)
