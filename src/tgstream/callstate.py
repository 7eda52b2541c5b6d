"""Where the Telegram output stands in the video chat: the states, the reasons, the port.

The output (:mod:`tgstream.adapters.tgcalls`) reports each change through :class:`CallEvents`;
the supervisor's :class:`~tgstream.supervisor.CallWatch` turns it into ``/status``, the
``call_state`` metric and Bot API alerts. This module imports no Telegram library.

States:

- ``none``: no Telegram output (``rtmp``, ``preview``), or the output is closed;
- ``joining``: the first join is under way;
- ``in_call``: in the video chat, frames reach the viewers;
- ``muted``: in the video chat but muted by an admin: viewers get the picture without sound;
- ``out``: out of the video chat; ``reason`` (a bounded label) says why. Units are dropped
  (the broadcast clock keeps running) and rejoins go on in the background.

``stream_up`` is 1 only while units are produced *and* reach the viewers: for the Telegram
output that means ``in_call``.
"""

from __future__ import annotations

from typing import Final, Literal, Protocol

__all__ = [
    "CallState",
    "CALL_STATES",
    "CALL_REASONS",
    "OPERATOR_REASONS",
    "REASON_HINTS",
    "CallEvents",
    "NullCallEvents",
]

CallState = Literal["none", "joining", "in_call", "muted", "out"]
CALL_STATES: Final[tuple[CallState, ...]] = ("none", "joining", "in_call", "muted", "out")

REASON_HINTS: Final[dict[str, str]] = {
    "": "",
    "kicked": "the account was removed from CHAT_ID (or banned there); add it back and it "
    "rejoins by itself",
    "left_group": "the account is no longer a member of CHAT_ID; add it back and it rejoins by "
    "itself",
    "no_access": "the account cannot see CHAT_ID (removed or banned); add it back or unban it "
    "and it rejoins by itself",
    "removed": "an admin removed the account from the video chat; it rejoins by itself",
    "muted": "an admin muted the account in the video chat: viewers get no sound; allow it to "
    "speak again",
    "call_ended": "an admin ended the video chat; ON_CALL_ENDED=wait: nothing is re-created, "
    "start a video chat in CHAT_ID (or restart the service) to broadcast again",
    "no_rights": "CHAT_ID has no active video chat and the account may not start one; give it "
    "the 'Manage video chats' admin right or start a video chat by hand",
    "forbidden": "Telegram refuses the join (GROUPCALL_FORBIDDEN or similar); the client is "
    "rebuilt after repeated refusals",
    "refused": "Telegram refused the join; check CHAT_ID and that the account is a member",
    "flood_wait": "Telegram asked to wait (FloodWait); the join is retried when it allows",
    "dropped": "the connection to the video chat was lost; rejoining",
    "timeout": "joining took too long; retrying",
    "error": "joining failed; retrying (see the log)",
    "session": "Telegram refused the session; see the degraded-mode alert",
}
"""Every reason label, with the sentence the operator gets in an alert."""
CALL_REASONS: Final[tuple[str, ...]] = tuple(REASON_HINTS)
OPERATOR_REASONS: Final = frozenset(
    {"kicked", "left_group", "no_access", "removed", "muted", "call_ended", "no_rights"}
)
"""Reasons that need a person: alerted at once. Others alert only when they last."""


class CallEvents(Protocol):
    """What the Telegram output reports about its place in the video chat."""

    def call_state(self, state: CallState, reason: str = "", detail: str = "") -> None:
        """``reason`` is one of :data:`CALL_REASONS`; ``detail`` is one line for people."""
        ...

    def client_rebuilt(self) -> None:
        """A new py-tgcalls client (and MTProto client) replaced one Telegram kept refusing."""
        ...


class NullCallEvents:
    def call_state(self, state: CallState, reason: str = "", detail: str = "") -> None:
        pass

    def client_rebuilt(self) -> None:
        pass
