"""The API contracts as documents: the OpenAPI of the REST API (committed in docs/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

__all__ = ["openapi_document", "main"]


def openapi_document() -> dict[str, Any]:
    """The REST API's OpenAPI document, as the running server serves it at /v1/openapi.json."""
    from chat4all.entrypoints.rest import create_app  # noqa: PLC0415 - FastAPI only here
    from chat4all.entrypoints.services import Services  # noqa: PLC0415
    from chat4all.service_layer.readiness import Readiness  # noqa: PLC0415

    # Only the routes' shapes are read: no use case is called, no check made.
    return create_app(cast(Services, None), ready=Readiness()).openapi()


def main() -> None:
    """``python -m chat4all.contracts PATH``: write the OpenAPI document."""
    Path(sys.argv[1]).write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
