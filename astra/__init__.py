"""AstraRay: a control plane for large-scale AI inference on Ray."""

__version__ = "0.1.0"

__all__ = ["__version__"]
