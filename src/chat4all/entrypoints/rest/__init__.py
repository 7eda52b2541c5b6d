"""The REST API: :func:`create_app` and one router per resource."""

from chat4all.entrypoints.rest.app import create_app

__all__ = ["create_app"]
