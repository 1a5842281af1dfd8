"""Internals of the pure-Python stand-in runtime (not part of the contract surface)."""
