"""Benchmarks of the port tools and the serve tasks against the system tools they replace.

Run ``python -m benchmarks --help`` from the repository root, or ``nox -s bench``.
Nothing here is imported by ``utils/``, ``backend/`` or ``tasks.py``.
"""
