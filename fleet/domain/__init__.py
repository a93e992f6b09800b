"""Pure domain logic: no IO, no framework imports."""
