"""Calls to the control plane that survive its restarts: jittered exponential
:class:`Backoff`, :func:`retry_call` for unary calls on :data:`TRANSIENT` status codes,
and :func:`open_channel`, a channel whose reconnects follow the same backoff.
"""

from astra.rpc._retry import TRANSIENT, Backoff, open_channel, retry_call

__all__ = ["TRANSIENT", "Backoff", "open_channel", "retry_call"]
