"""The object floor (floor.c), compiled when the benchmarks first need it
into build/bench-floor under the repository root; never part of the package."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(ROOT, "build", "bench-floor")
NAME = "pp_bench_floor"

_module: ModuleType | None = None


def _build() -> str:
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    ext = Extension(NAME, sources=[os.path.join(HERE, "floor.c"),
                                   os.path.join(ROOT, "csrc", "pp_inet.c")],
                    include_dirs=[os.path.join(ROOT, "csrc")], extra_compile_args=["-O2"])
    dist = Distribution({"name": NAME, "ext_modules": [ext]})
    cmd = build_ext(dist)
    cmd.build_lib = BUILD
    cmd.build_temp = os.path.join(BUILD, "tmp")
    cmd.ensure_finalized()
    cmd.run()
    return cmd.get_ext_fullpath(NAME)


def _built() -> str | None:
    """The module built from the current sources, if there is one: checked
    without importing setuptools (slow to import, and slower still under
    valgrind, where bench.callgrind loads this module)."""
    import sysconfig
    path = os.path.join(BUILD, NAME + sysconfig.get_config_var("EXT_SUFFIX"))
    sources = [os.path.join(HERE, "floor.c"), os.path.join(ROOT, "csrc", "pp_inet.c"),
               os.path.join(ROOT, "csrc", "pp_inet.h")]
    if os.path.exists(path) and all(os.path.getmtime(s) <= os.path.getmtime(path)
                                    for s in sources):
        return path
    return None


def load() -> ModuleType:
    """The compiled floor module (built on first use)."""
    global _module
    if _module is None:
        path = _built() or _build()
        spec = importlib.util.spec_from_file_location(NAME, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[NAME] = module
        _module = module
    return _module
