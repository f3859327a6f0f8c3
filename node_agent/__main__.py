"""``python -m node_agent``: the same as ``astra agent``."""

from node_agent._cli import agent

agent(prog_name="python -m node_agent")
