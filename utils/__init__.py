"""Port tooling for the backend: see ``utils.port_manager`` for the public API."""
