"""chat4all: one REST + gRPC API for WhatsApp, Instagram Direct, Messenger and Telegram."""

__version__ = "0.1.0"
