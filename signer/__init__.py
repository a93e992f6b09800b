"""Offline keys, signing and the device-side verification rules of tinyfleet.

Runs without the server: imports only ``schemas``, ``cryptography`` and the standard
library (the CLI adds ``typer``).
"""
