"""Port tooling for the backend: see ``utils.port_manager`` for the public API."""

__version__ = "0.1.0"  # the project's one version: the backend and the package read it here
