"""The programs that compose AstraRay: the ``astra`` command (:mod:`programs.cli`), with
``astra up`` (every part in one process), ``astra serve`` (one service per process) and
the simulator (:mod:`programs.sim`). The top floor: nothing imports it."""
