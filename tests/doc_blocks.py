"""The documentation's code, as the tests see it: README.md, CONTRIBUTING.md
and docs/**/*.md, their fenced blocks and the README's table of servers.

Conventions (CONTRIBUTING.md, "Documentation"):
- a ```python block runs as written, in the quick tier;
- one containing ``# serves forever`` is a server program: compiled in the
  quick tier, started in the servers tier on a free port in place of 9080
  and asked, behind a header, who the client is;
- one whose first line is ``# file: PATH`` is a file the page's shell
  commands use: compiled in the quick tier, written out for them;
- each line of a ```sh block is a command, run by tests/test_doc_commands.py
  (or listed there with the reason it cannot run here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SERVES_FOREVER = "# serves forever"
FILE_MARK = re.compile(r"^# file: (\S+)\n")
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
_TABLE = re.compile(r"<!-- servers -->\n(.*?)<!-- /servers -->", re.S)
_CODE_SPAN = re.compile(r"`([^`]+)`")


def in_checkout() -> bool:
    """Whether docs/ and .ci/ are here (not in an sdist's or a wheel test's
    scratch copy of the tests, which has README.md alone)."""
    return DOCS.is_dir() and (ROOT / ".ci" / "run").is_file()


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def file(self) -> str | None:
        """The path a ``# file:`` block is written to, else None."""
        match = FILE_MARK.match(self.code)
        return match.group(1) if match else None

    @property
    def serves_forever(self) -> bool:
        return SERVES_FOREVER in self.code

    def commands(self) -> list[str]:
        """A shell block's command lines (comments and blank lines left out)."""
        return [line for line in self.code.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]


def documents() -> list[Path]:
    """Every documentation page of this checkout (docs/ only in a checkout)."""
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    if DOCS.is_dir():
        pages += sorted(DOCS.rglob("*.md"))
    return [page for page in pages if page.is_file() and "_build" not in page.parts]


def blocks(lang: str | None = None) -> list[Block]:
    found = []
    for page in documents():
        text = page.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            info = match.group(1).strip()
            if info.startswith("{"):  # a MyST directive, not code
                continue
            block = Block(page, text.count("\n", 0, match.start()) + 1, info, match.group(2))
            if lang is None or block.lang == lang:
                found.append(block)
    return found


def page_files(page: Path) -> dict[str, str]:
    """The ``# file:`` blocks of a page, by the path they are written to."""
    return {block.file: block.code for block in blocks("python")
            if block.path == page and block.file is not None}


def server_table() -> list[tuple[str, list[str]]]:
    """The README's table of servers: (server, the code spans of its row)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = []
    for line in _TABLE.search(text).group(1).splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        spans = [span for cell in cells[1:] for span in _CODE_SPAN.findall(cell)]
        rows.append((cells[0], spans))
    return rows
