"""``python -m node_agent``: the same as ``astra agent`` (whose group registers the
command, so it is entered through it)."""

import sys

from astra.cli import main

main(["agent", *sys.argv[1:]], prog_name="astra")
