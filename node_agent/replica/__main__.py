"""``python -m node_agent.replica``: a replica's driver (see :mod:`node_agent.replica._host`)."""

import sys

from node_agent.replica._host import main

sys.exit(main())
