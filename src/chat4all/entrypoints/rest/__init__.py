"""The REST API: :func:`create_app` and one router per resource; :func:`create_probes_app`,
the operations' routes alone (a process without the API)."""

from chat4all.entrypoints.rest.app import create_app, create_probes_app

__all__ = ["create_app", "create_probes_app"]
