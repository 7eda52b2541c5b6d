"""chat4all: one REST + gRPC API over many messaging channels, each a plugin."""

__version__ = "0.1.0"
