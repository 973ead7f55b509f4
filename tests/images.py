"""Images the tests make themselves (the load-test corpus generator, re-used)."""

from loadtest.corpus import encode, photo

__all__ = ["encode", "photo"]
