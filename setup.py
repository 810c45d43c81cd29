"""Build the optional Cython extension; everything else is in pyproject.toml.

PYPROXYPROTO_NO_EXTENSIONS=1 builds a pure-Python package.  Without a
working compiler a source install falls back to pure Python with a
warning, except under cibuildwheel (CIBUILDWHEEL=1) or with
PYPROXYPROTO_REQUIRE_EXTENSIONS=1, where a failed build is an error.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = _flag("PYPROXYPROTO_NO_EXTENSIONS")
MUST_BUILD = _flag("CIBUILDWHEEL") or _flag("PYPROXYPROTO_REQUIRE_EXTENSIONS")

EXTENSIONS = [
    Extension(
        "pyproxyproto._parser_c",
        sources=[
            "pyproxyproto/_parser_c.pyx",
            "csrc/pp_crc32c.c",
            "csrc/pp_inet.c",
        ],
        include_dirs=["csrc"],
        depends=["csrc/pp_crc32c.h", "csrc/pp_inet.h", "csrc/pp_members.h", "csrc/pp_once.h"],
    )
]


class CythonBuildExt(build_ext):
    """Run Cython inside build_ext, and make the extension optional."""

    def finalize_options(self):
        from Cython.Build import cythonize

        self.distribution.ext_modules[:] = cythonize(
            self.distribution.ext_modules,
            compiler_directives={"language_level": "3"},
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


setup(
    ext_modules=[] if NO_EXTENSIONS else EXTENSIONS,
    cmdclass={} if NO_EXTENSIONS else {"build_ext": CythonBuildExt},
)
