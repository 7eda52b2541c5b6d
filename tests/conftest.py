"""Shared pytest set-up: nothing here talks to the internet; servers bind 127.0.0.1 only."""
