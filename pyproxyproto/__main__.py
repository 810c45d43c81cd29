"""``python -m pyproxyproto``: the command line (the console script calls ``_cli.main`` directly)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
