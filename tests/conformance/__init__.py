"""Fixtures for the MCP conformance suite test (``tests/test_conformance.py``)."""
