"""Benchmarks for pyproxyproto: parse speed against the alternatives, an
asyncio accept loop, and the report command (``python -m bench``)."""
