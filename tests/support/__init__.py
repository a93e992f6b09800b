"""Test support: real processes and servers that tests start on free ports and always stop."""
