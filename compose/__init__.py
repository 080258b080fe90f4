"""From Compose files to a running stack: loader, graph, reconciler, CLI."""

# Kept in step with pyproject.toml (a test checks); importlib.metadata costs ~18 ms a start.
__version__ = "0.1.0"
