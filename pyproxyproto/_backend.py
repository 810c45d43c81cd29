"""Choose the parser backend, and whether the compiled handshake and asyncio protocol are used, once, at import.

PYPROXYPROTO_NO_EXTENSIONS selects the pure-Python backend, and so does any
interpreter but CPython (on PyPy the pure backend is the fast one);
PYPROXYPROTO_REQUIRE_EXTENSIONS turns a missing extension into an
ImportError instead of a silent fallback (CI and wheel tests set it), on
any interpreter.
"""

import importlib
import os
import sys
from types import ModuleType

from . import _constants as C

EXTENSION = "pyproxyproto._parser_c"
# Modules written once, for Cython's pure-Python mode: each runs as Python
# under its own name and, compiled, as this one.
HANDSHAKE_EXTENSION = "pyproxyproto._handshake_c"
AIO_EXTENSION = "pyproxyproto._aio_protocol_c"


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def available() -> dict[str, ModuleType]:
    """The backends these switches allow, by name (tests compare them all)."""
    from . import _parser_py

    found = {"python": _parser_py}
    extension = load_extension(EXTENSION)
    if extension is not None:
        found["cython"] = extension
    return found


def load_extension(name: str) -> ModuleType | None:
    """The C extension ``name`` if these switches allow it and it imports;
    None otherwise (an ImportError under PYPROXYPROTO_REQUIRE_EXTENSIONS)."""
    required = _flag(C.ENV_REQUIRE_EXTENSIONS)
    if _flag(C.ENV_NO_EXTENSIONS) or (sys.implementation.name != "cpython" and not required):
        return None
    try:
        # import_module, not "from . import": during the package's own import
        # a missing module would be reported as a circular import.
        return importlib.import_module(name)
    except ImportError as exc:
        if required:
            raise ImportError(_missing(name, exc), name=name) from exc
    return None


def _missing(name: str, exc: ImportError) -> str:
    switch = f"{C.ENV_REQUIRE_EXTENSIONS}=1 is set"
    if isinstance(exc, ModuleNotFoundError) and exc.name == name:
        return (
            f"{switch}, but pyproxyproto's C extension ({name}) is not installed: "
            "this installation is pure Python (built without a C compiler, with "
            f"{C.ENV_NO_EXTENSIONS}=1, or from the py3-none-any wheel)"
        )
    return f"{switch}, but pyproxyproto's C extension ({name}) failed to import: {exc}"


_AVAILABLE = available()
BACKEND = "cython" if "cython" in _AVAILABLE else "python"
impl = _AVAILABLE[BACKEND]
