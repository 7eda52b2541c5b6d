"""What Meta's channels (WhatsApp Cloud API, Messenger, Instagram) share: the Graph API.

- :mod:`.version`: the ``v{N}.0`` version in every path;
- :mod:`.signature`: ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body under the app
  secret), checked in constant time, and made for the simulators;
- :mod:`.handshake`: the ``GET`` subscription handshake (``hub.mode``, ``hub.verify_token``,
  ``hub.challenge``);
- :mod:`.errors`: the Graph error envelope and its classification by ``code`` into our
  retryable / paced / permanent delivery errors, and :class:`AccountPaused` for a dead token;
- :mod:`.client`: a small async (aiohttp) client that sends the Bearer token;
- :mod:`.media`: a downloaded inbound file kept in our media store.
"""

from chat4all.adapters.channels.graph.client import DEFAULT_TIMEOUT, GraphClient, GraphFailure
from chat4all.adapters.channels.graph.errors import (
    GRAPH_RULES,
    AccountPaused,
    Action,
    GraphError,
    Rule,
    Rules,
    Scope,
    classify,
    delivery_error,
)
from chat4all.adapters.channels.graph.handshake import handshake
from chat4all.adapters.channels.graph.signature import (
    SIGNATURE_HEADER,
    check_signature,
    sign,
    verify,
)
from chat4all.adapters.channels.graph.version import DEFAULT_VERSION, VERSION, check_version

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_VERSION",
    "GRAPH_RULES",
    "SIGNATURE_HEADER",
    "VERSION",
    "AccountPaused",
    "Action",
    "GraphClient",
    "GraphError",
    "GraphFailure",
    "Rule",
    "Rules",
    "Scope",
    "check_signature",
    "check_version",
    "classify",
    "delivery_error",
    "handshake",
    "sign",
    "verify",
]
