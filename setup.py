"""Build the optional Cython extensions; everything else is in pyproject.toml.

The extensions: the parser (pyproxyproto._parser_c, whose pure-Python twin
is _parser_py), and modules written once in Cython's pure-Python mode,
compiled here under a name of their own (``X.py`` typed by ``X_c.pxd``
becomes ``X_c``) while ``X`` stays importable as Python: the handshake,
the asyncio header protocol and the asyncio internals it reaches.

PYPROXYPROTO_NO_EXTENSIONS=1 builds a pure-Python package, and so does any
interpreter but CPython (PyPy runs the pure backend faster than a C
extension through its cpyext layer).  Without a working compiler a source
install falls back to pure Python with a warning, except under cibuildwheel
(CIBUILDWHEEL=1) or with PYPROXYPROTO_REQUIRE_EXTENSIONS=1, where a failed
build is an error (and which build the extension on any interpreter).

Release builds are linked stripped (no symbol table or debug sections);
``build_ext --debug`` or PYPROXYPROTO_DEBUG_BUILD=1 keeps them, for
debuggers and sanitizer reports.
"""

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


MUST_BUILD = _flag("CIBUILDWHEEL") or _flag("PYPROXYPROTO_REQUIRE_EXTENSIONS")
NO_EXTENSIONS = _flag("PYPROXYPROTO_NO_EXTENSIONS") or (
    sys.implementation.name != "cpython" and not MUST_BUILD
)
DEBUG_BUILD = _flag("PYPROXYPROTO_DEBUG_BUILD")

EXTENSIONS = [
    Extension(
        "pyproxyproto._parser_c",
        sources=[
            "pyproxyproto/_parser_c.pyx",
            "csrc/pp_crc32c.c",
            "csrc/pp_inet.c",
        ],
        include_dirs=["csrc"],
        depends=["pyproxyproto/_parser_c.pxd", *glob.glob("pyproxyproto/_parser_c_*.pxi"), "csrc/pp_crc32c.h", "csrc/pp_inet.h",
                 "csrc/pp_members.h", "csrc/pp_once.h", "csrc/pp_shared.h"],
    ),
    *(
        Extension(f"pyproxyproto.{name}_c", sources=[f"pyproxyproto/{name}.py"],
                  depends=[f"pyproxyproto/{name}_c.pxd", "pyproxyproto/_parser_c.pxd"])
        for name in ("_handshake", "_asyncio_internals", "_aio_protocol")
    ),
]


class CythonBuildExt(build_ext):
    """Run Cython inside build_ext, and make the extension optional."""

    def finalize_options(self):
        from Cython.Build import cythonize

        self.distribution.ext_modules[:] = cythonize(
            self.distribution.ext_modules,
            # The .pxd files type the pure-Python-mode modules; their
            # annotations are for mypy and readers, not C types.  Every
            # module is safe without the GIL: module state is constants,
            # a Handshake belongs to one connection, Stats takes its lock.
            compiler_directives={"language_level": "3", "annotation_typing": False,
                                 "freethreading_compatible": True},
            annotate=_flag("PYPROXYPROTO_ANNOTATE"),
            quiet=True,
        )
        super().finalize_options()

    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing or failing: fall back
            self._fallback(exc)

    def build_extension(self, ext):
        if not (self.debug or DEBUG_BUILD):
            ext.extra_link_args = ext.extra_link_args + _strip_flags(self.compiler)
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fallback(exc)

    def _fallback(self, exc):
        if MUST_BUILD:
            raise exc
        sys.stderr.write(
            "WARNING: pyproxyproto's C extension could not be built "
            f"({exc}); installing the pure-Python backend, which is slower.\n"
        )


def _strip_flags(compiler):
    """Linker flags that leave symbols and debug sections out of the module."""
    if compiler.compiler_type != "unix":
        return []  # MSVC keeps debug information in a separate .pdb already
    if sys.platform == "darwin":
        return ["-Wl,-S,-x"]  # ld64: no debug information, no local symbols
    return ["-s"]


setup(
    ext_modules=[] if NO_EXTENSIONS else EXTENSIONS,
    cmdclass={} if NO_EXTENSIONS else {"build_ext": CythonBuildExt},
)
