"""Fakes of external services, for fault injection only (the happy path runs against real engines)."""
