"""Sphinx configuration of the documentation site (docs/), built by
``python -m sphinx -W --keep-going -b html docs docs/_build/html``.

The API reference is generated from the docstrings of the pure-Python
backend: it carries the annotations (the compiled one has the same API,
held to it by the tests and by its stub, _parser_c.pyi)."""

from __future__ import annotations

import importlib
import os

# Before anything imports pyproxyproto: document the pure backend.
os.environ["PYPROXYPROTO_NO_EXTENSIONS"] = "1"
os.environ.pop("PYPROXYPROTO_REQUIRE_EXTENSIONS", None)

import logging  # noqa: E402

import pyproxyproto  # noqa: E402

# Importing pyproxyproto.sanic reads PYPROXYPROTO_* and logs its start-up notes.
logging.getLogger("pyproxyproto").setLevel(logging.ERROR)

project = "pyproxyproto"
author = "pyproxyproto developers"
copyright = "pyproxyproto developers"
release = version = pyproxyproto.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"pyproxyproto {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True}
autodoc_preserve_defaults = True

# Every reference to pyproxyproto's own names must resolve (-n with -W);
# other projects' names cannot, without their inventories (no network).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!pyproxyproto\b).*"),
    (r"py:.*", r"pyproxyproto\.(.*\.)?_.*"),  # private bases and helpers
]

# The public modules and the names each documents: every one must be in the
# reference (checked when the build ends).
PUBLIC_MODULES = [
    "pyproxyproto", "pyproxyproto.aio", "pyproxyproto.datagram", "pyproxyproto.sockets",
    "pyproxyproto.anyio", "pyproxyproto.uvicorn", "pyproxyproto.gunicorn",
    "pyproxyproto.hypercorn", "pyproxyproto.tornado", "pyproxyproto.sanic",
    "pyproxyproto.twisted", "pyproxyproto.gevent", "pyproxyproto.websockets",
    "pyproxyproto.waitress", "pyproxyproto.aiohttp", "pyproxyproto.prometheus",
]


def public_names() -> list[str]:
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        lazy = getattr(module, "_LAZY", {})  # pyproxyproto.gunicorn's on-demand workers
        for name in [*module.__all__, *lazy]:
            names.append(f"{module_name}.{name}")
    return names


def check_reference(app, env) -> None:
    """Warn (an error under -W) for a public name the reference lacks."""
    documented = set(env.domains["py"].objects)
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    for name in public_names():
        module, _, attr = name.rpartition(".")
        # A name re-exported from another public module is documented there.
        target = getattr(importlib.import_module(module), attr)
        home = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
        if name not in documented and home not in documented:
            log.warning("the API reference lacks %s", name)


def setup(app):
    app.connect("env-check-consistency", check_reference)
