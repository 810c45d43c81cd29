"""Twisted plugin: the ``pyproxyproto:`` server endpoint strings (daphne -e, twistd).

No ``__init__.py`` here: twisted/plugins is Twisted's package, and this
file only joins it.
"""

from pyproxyproto.twisted import ProxyProtocolServerParser

pyproxyprotoServerParser = ProxyProtocolServerParser()
