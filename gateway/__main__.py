"""``python -m gateway``: the same as ``astra gateway``."""

from gateway._cli import gateway_command

gateway_command(prog_name="python -m gateway")
