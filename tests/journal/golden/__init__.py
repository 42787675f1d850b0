"""Golden event streams: bytes written by an old version that every later one must decode."""
