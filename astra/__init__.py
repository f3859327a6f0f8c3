"""AstraRay: a control plane for large-scale AI inference on Ray.

The library every other package stands on. Besides its subpackages (the store, the
records and keys, settings, the server scaffolding, telemetry, ...) it gives a process:

- :func:`configure_logging`: one stderr handler, one format;
- :func:`gc_for_serving`, :class:`LongLived`, :func:`release_free_memory`: the garbage
  collector and the allocator set for a long-lived serving process;
- :func:`with_parent`: a child command that is stopped when its parent dies;
- :func:`quick_init`: a frozen dataclass with a cheap ``__init__``, for hot records.
"""

from astra._frozen import quick_init
from astra._log import configure_logging
from astra._memory import YOUNG_THRESHOLD, LongLived, gc_for_serving, release_free_memory
from astra._with_parent import with_parent

__version__ = "0.1.0"

__all__ = [
    "YOUNG_THRESHOLD",
    "LongLived",
    "__version__",
    "configure_logging",
    "gc_for_serving",
    "quick_init",
    "release_free_memory",
    "with_parent",
]
