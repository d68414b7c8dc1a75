"""The web backend: its ASGI app and the code that starts it (see DESIGN.md)."""

__version__ = "0.1.0"
