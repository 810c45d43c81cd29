"""``python -m pyproxyproto`` and the ``pyproxyproto`` console script."""

import sys
from typing import Optional, Sequence

from ._cli import main as _run


def main(argv: Optional[Sequence[str]] = None) -> int:
    return _run(argv)


if __name__ == "__main__":
    sys.exit(main())
