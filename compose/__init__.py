"""From Compose files to a running stack: loader, graph, reconciler, CLI."""
