"""Test support: a real Redis, real service processes, real payloads, waiting helpers."""
