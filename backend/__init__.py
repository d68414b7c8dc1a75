"""The web backend: its ASGI app and the code that starts it (``backend/server.py``)."""

from utils import __version__

__all__ = ["__version__"]
