"""The canonical messaging model; imports only the standard library."""
