"""Thin operations layer shared by tgstream and chat4all: no business logic lives here.

- :mod:`opskit.logs`: handler set-up, secret masking, text and JSON formats;
- :mod:`opskit.procs`: child processes that never outlive the service;
- :mod:`opskit.lifecycle`: SIGTERM/SIGINT turned into a stop event.
"""
