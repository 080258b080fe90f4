"""Shipyard's embedded container engine. It knows nothing about Compose."""
