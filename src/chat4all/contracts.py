"""The API contracts as documents: the OpenAPI of the REST API (committed in docs/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["openapi_document", "main"]


def openapi_document() -> dict[str, Any]:
    """The REST API's OpenAPI document, as the running server serves it at /v1/openapi.json."""
    from chat4all.entrypoints.rest import create_app  # noqa: PLC0415 - FastAPI only here
    from chat4all.service_layer.events import EventBus  # noqa: PLC0415
    from chat4all.service_layer.inbound import Inbound  # noqa: PLC0415
    from chat4all.service_layer.media import MediaLibrary  # noqa: PLC0415

    async def ready() -> bool:
        return True

    bus = EventBus()
    app = create_app(
        None,  # type: ignore[arg-type] # only the routes' shapes are read
        None,  # type: ignore[arg-type]
        ready,
        dead_letters=_Unused(),
        inbound=Inbound(_Unused(), bus, lambda _c, _a: ""),  # type: ignore[arg-type]
        bus=bus,
        webhooks=_Unused(),  # type: ignore[arg-type]
        media=MediaLibrary(_Unused()),  # type: ignore[arg-type]
    )
    return app.openapi()


class _Unused:
    async def dead_letters(self, *_: object) -> Any:
        raise NotImplementedError

    async def replay(self, *_: object) -> Any:
        raise NotImplementedError


def main() -> None:
    """``python -m chat4all.contracts PATH``: write the OpenAPI document."""
    Path(sys.argv[1]).write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
