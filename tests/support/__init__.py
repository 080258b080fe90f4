"""Helpers shared by the test suites (fixtures' building blocks, leak checks)."""
