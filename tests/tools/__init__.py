"""Test-only tools (fault injection, fixtures) shared by unit, integration and chaos tests."""
