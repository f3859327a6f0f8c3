"""``python -m astra.cli``: the same as the ``astra`` command."""

from astra.cli import main

main(prog_name="astra")
