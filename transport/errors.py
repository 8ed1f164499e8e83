"""Error classes shared by every layer, with mediasoup's names.

All of them pass their arguments positionally to ``Exception.__init__`` so that instances survive
pickling across Ray actor boundaries (``pickle.loads(pickle.dumps(e))`` gives an equal error).

- :class:`UnsupportedError`: codec, header extension or feature the router cannot serve
  (mediasoup ``UnsupportedError``).
- :class:`InvalidStateError`: a method called on a closed object (mediasoup ``InvalidStateError``).
- :class:`PacketParseError`: a malformed packet; always caught on the receive path, where the
  packet is dropped and counted.
- Bad arguments raise the builtin ``TypeError`` / ``ValueError`` with a message naming the field.
"""

from __future__ import annotations


class SfuError(Exception):
    """Base class of raysfu's own errors."""


class UnsupportedError(SfuError):
    """Codec, header extension or feature the router cannot handle (mediasoup ``UnsupportedError``)."""


class InvalidStateError(SfuError):
    """Method called on an object in the wrong state, e.g. closed (mediasoup ``InvalidStateError``)."""


class PacketParseError(SfuError, ValueError):
    """A malformed packet.

    ``kind`` names the protocol ("rtp", "rtcp", "stun", "dtls", "srtp", ...), ``reason`` says why.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(kind, reason)
        self.kind = kind
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"
