#!/usr/bin/env python3
"""The seed runbook's session diagnosis, kept so operators who follow it are not lost.

    python test/diag_session.py [--env-file PATH] [--timeout SECONDS]

is ``tgstream session check``: it shows the configured SESSION_STRING masked (``***abcd``), the
Telegram data centre and account id it names, then logs in and says who we are. Exit codes: 0 the
session is valid, 1 it is not (the message says why and what to do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tgstream.session_cli import diagnose


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="settings file (default: ./.env when it exists)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds the login may take")
    args = parser.parse_args(argv)
    return diagnose(args.env_file, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
