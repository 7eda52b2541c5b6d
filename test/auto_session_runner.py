#!/usr/bin/env python3
"""The seed runbook's session helper, kept so operators who follow it are not lost.

    python test/auto_session_runner.py --write-env [PATH]

is ``tgstream session new --write-env PATH`` (PATH defaults to ``.env``): it asks for the phone
number, the login code and the 2FA password, then writes the new SESSION_STRING into PATH
atomically, under PATH's lock, with a backup. Exit codes: 0 success, 1 failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tgstream.session_cli import new_session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write-env",
        nargs="?",
        const=Path(".env"),
        type=Path,
        default=None,
        metavar="PATH",
        help="write SESSION_STRING into PATH (default .env); without it, print the session",
    )
    parser.add_argument(
        "--env-file", type=Path, default=None, help="where API_ID and API_HASH are read from"
    )
    parser.add_argument("--phone", default=None)
    args = parser.parse_args(argv)
    return new_session(args.env_file, args.write_env, args.phone)


if __name__ == "__main__":
    sys.exit(main())
