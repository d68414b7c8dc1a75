"""The project's own pytest plugin runs for its own suite: race-free ports for every
test (also across pytest-xdist workers) and a check that no test leaves a server listening.
``pytester`` runs the plugin's own tests (tests/test_pytest_plugin.py)."""

pytest_plugins = ["utils.pytest_plugin", "pytester"]
