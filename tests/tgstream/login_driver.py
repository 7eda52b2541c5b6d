"""``tgstream session new`` with a fake Telegram behind the pyrogram client, for pexpect.

Run as ``python -m tests.tgstream.login_driver ARGS...`` (the arguments of ``session new``).
The login code is 12345 and the 2FA password is hunter2; anything else is refused the way
Telegram refuses it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from pyrogram.errors import PasswordHashInvalid, PhoneCodeInvalid, SessionPasswordNeeded

from tests.tgstream.fakes import session_string
from tgstream.session_cli import new_session

NEW_SESSION = session_string(user_id=4242, key=b"\x07" * 256)


class FakeLoginClient:
    def __init__(self, api_id: int, api_hash: str) -> None:
        self.is_connected = False
        self.password_ok = False

    async def connect(self) -> bool:
        self.is_connected = True
        return False

    async def send_phone_number_code(self, phone: str) -> SimpleNamespace:
        return SimpleNamespace(phone_code_hash="hash-" + phone)

    async def sign_in(self, phone: str, code_hash: str, code: str) -> object:
        assert code_hash == "hash-" + phone
        if code != "12345":
            raise PhoneCodeInvalid()
        raise SessionPasswordNeeded()

    async def check_password(self, password: str) -> object:
        if password != "hunter2":
            raise PasswordHashInvalid()
        self.password_ok = True
        return SimpleNamespace(id=4242)

    async def export_session_string(self) -> str:
        assert self.password_ok
        return NEW_SESSION

    async def disconnect(self) -> None:
        self.is_connected = False


def main() -> int:
    args = sys.argv[1:]
    write_env = Path(args[args.index("--write-env") + 1]) if "--write-env" in args else None
    env_file = write_env  # None: ./.env when it exists
    return new_session(env_file, write_env, None, client_factory=FakeLoginClient)


if __name__ == "__main__":
    sys.exit(main())
