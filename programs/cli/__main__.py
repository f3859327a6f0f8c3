"""``python -m programs.cli``: the same as the ``astra`` command."""

from programs.cli import main

main(prog_name="astra")
