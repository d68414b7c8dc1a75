"""The web backend: its ASGI app and the code that starts it (see DESIGN.md)."""
