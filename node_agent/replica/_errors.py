"""Why a replica cannot serve. Each error makes the replica FAILED with its message;
none is retried by restarting the replica (the same input fails the same way). They
pickle, so they reach the replica's driver through Ray::

    ModelError                    a declared model cannot be served
    ├── FetchError                the file could not be fetched from its URI
    ├── ChecksumError             the fetched file's sha256 is not the declared one
    └── ModelLoadError            ONNX Runtime refused the file, or ran it on the wrong device
"""

from __future__ import annotations


class ModelError(Exception):
    """A declared model cannot be served; the message says which and why."""


class FetchError(ModelError):
    """The model file could not be fetched (missing file, HTTP error, unknown scheme)."""


class ChecksumError(ModelError):
    """The fetched file's sha256 is not the declared one; the file is discarded."""

    def __init__(self, uri: str, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch for {uri}: expected {expected}, got {actual}")
        self.uri, self.expected, self.actual = uri, expected, actual

    def __reduce__(self) -> tuple[type[ChecksumError], tuple[str, str, str]]:
        # Pickled as it was built: Ray sends a replica's errors to its driver.
        return type(self), (self.uri, self.expected, self.actual)


class ModelLoadError(ModelError):
    """ONNX Runtime could not load the model (its message is kept), or the model would
    run on the CPU of a replica that was given GPUs."""
