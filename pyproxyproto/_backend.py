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


def available() -> dict[str, ModuleType]:
    """The backends these switches allow, by name (tests compare them all)."""
    from . import _parser_py

    found = {"python": _parser_py}
    if not _flag(C.ENV_NO_EXTENSIONS):
        try:
            from . import _parser_c
        except ImportError:
            if _flag(C.ENV_REQUIRE_EXTENSIONS):
                raise
        else:
            found["cython"] = _parser_c
    return found


_AVAILABLE = available()
BACKEND = "cython" if "cython" in _AVAILABLE else "python"
impl = _AVAILABLE[BACKEND]
