"""Choose the parser backend once, at import.

PYPROXYPROTO_NO_EXTENSIONS selects the pure-Python backend;
PYPROXYPROTO_REQUIRE_EXTENSIONS turns a missing extension into an
ImportError instead of a silent fallback (CI and wheel tests set it).
"""

import os
from types import ModuleType

from . import _constants as C


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _load() -> tuple[ModuleType, str]:
    if not _flag(C.ENV_NO_EXTENSIONS):
        try:
            from . import _parser_c
        except ImportError:
            if _flag(C.ENV_REQUIRE_EXTENSIONS):
                raise
        else:
            return _parser_c, "cython"
    from . import _parser_py

    return _parser_py, "python"


impl, BACKEND = _load()
