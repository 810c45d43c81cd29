"""What a module written for Cython's pure-Python mode reads from ``cython`` when Cython is not installed.

Those modules do ``try: import cython / except ImportError: from . import
_cython as cython``; compiled, ``cython.compiled`` is True and nothing here
is used.
"""

compiled = False
