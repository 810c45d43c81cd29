"""Every Python example in README.md runs as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    code = BLOCKS[index]
    compiled = compile(code, f"README.md example {index + 1}", "exec")
    # Servers that run forever are marked; they are only compiled.
    if "# serves forever" not in code:
        exec(compiled, {"__name__": "readme"})


def test_readme_has_examples():
    assert BLOCKS
