"""SRTP / SRTCP protection (RFC 3711, RFC 7714 AES-GCM) over libsrtp2 through pylibsrtp.

One :class:`SrtpSession` per transport: an outbound libsrtp session keyed with the local master
key+salt (``ssrc_any_outbound``) and an inbound one keyed with the remote master key+salt
(``ssrc_any_inbound``), as mediasoup's ``SrtpSession`` pair does. Keys come from the DTLS
exporter (:meth:`raysfu.transport.dtls.DtlsSession.srtp_keys`, RFC 5764 §4.2) on a
WebRtcTransport, or from signalled ``srtpParameters`` (:func:`generate_srtp_parameters`,
:meth:`SrtpSession.from_base64`) on a PlainTransport / PipeTransport.

Hot path (DESIGN §5): the libsrtp contexts live as long as the session. The ``*_into`` methods
work in place on a caller-owned C buffer (:func:`new_packet_buffer`): the forwarding path writes
each consumer's copy there, protects it and sends it from there, with no copy and no allocation.
The bytes-in/bytes-out methods cost one copy into a preallocated C buffer, the libsrtp call and
one copy out. When pylibsrtp exposes the libsrtp 2 calling convention
(``srtp_protect(srtp_t, void *, int *)``) we call its cffi ``lib`` directly on our own buffers;
otherwise (a future pylibsrtp) we fall back to its public ``Session.protect/unprotect`` API,
which allocates per call (the ``*_into`` methods then copy in and out).

Not thread-safe: one session is used from one event loop thread.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any, Callable

import cffi
import pylibsrtp
from pylibsrtp import Policy, Session

from .errors import PacketParseError

__all__ = [
    "SRTP_CRYPTO_SUITES",
    "SRTP_MAX_TRAILER_BYTES",
    "SrtpSession",
    "generate_srtp_parameters",
    "new_packet_buffer",
]

#: mediasoup ``cryptoSuite`` name -> (pylibsrtp profile constant, master key length in bytes,
#: master salt length in bytes). RFC 7714 §14.2 (GCM), RFC 3711 §8.2 / RFC 4568 (AES_CM).
SRTP_CRYPTO_SUITES: dict[str, tuple[int, int, int]] = {}
for _name, _attr in (
    ("AEAD_AES_256_GCM", "SRTP_PROFILE_AEAD_AES_256_GCM"),
    ("AEAD_AES_128_GCM", "SRTP_PROFILE_AEAD_AES_128_GCM"),
    ("AES_CM_128_HMAC_SHA1_80", "SRTP_PROFILE_AES128_CM_SHA1_80"),
    ("AES_CM_128_HMAC_SHA1_32", "SRTP_PROFILE_AES128_CM_SHA1_32"),
):
    _profile = getattr(Policy, _attr, None)
    if _profile is None:  # pragma: no cover - depends on the pylibsrtp build
        continue
    try:  # AES-GCM is missing when libsrtp2 was built without a crypto library
        Policy(srtp_profile=_profile)
    except pylibsrtp.Error:  # pragma: no cover
        continue
    SRTP_CRYPTO_SUITES[_name] = (
        _profile,
        pylibsrtp.lib.srtp_profile_get_master_key_length(_profile),
        pylibsrtp.lib.srtp_profile_get_master_salt_length(_profile),
    )
del _name, _attr, _profile

#: replay window (packets) for inbound streams; libsrtp's default is 128, mediasoup uses 1024.
DEFAULT_REPLAY_WINDOW_SIZE = 1024
#: index window (packets) of outbound streams: how far behind the newest packet a packet may be
#: protected again (a NACK answered without RTX resends the original seq; libsrtp refuses one
#: older than the window as "replay_old"). libsrtp shifts this bit window on every new packet
#: (1024 bits cost ~1.4k instructions per protect, 256 bits ~0.35k); 256 packets is 0.85 s of
#: 3 Mbps video and 5 s of audio, past the NACK round trips a resend is useful for (with RTX,
#: the norm for video, resends carry new RTX seqs and are not limited by it).
SEND_WINDOW_SIZE = 256

#: room (bytes) libsrtp may append to a packet it protects: auth tag or GCM tag, SRTCP index,
#: MKI (libsrtp ``SRTP_MAX_TRAILER_LEN``).
SRTP_MAX_TRAILER_BYTES = 148

#: largest packet (bytes) we accept; WebRTC RTP over UDP stays below ~1500.
MAX_PACKET_BYTES = 4096 - SRTP_MAX_TRAILER_BYTES

_MIN_RTP_BYTES = 12  # RFC 3550 fixed header
_MIN_RTCP_BYTES = 8  # RFC 3550 RTCP header + sender SSRC

_ERRORS: list[str] = list(getattr(pylibsrtp, "ERRORS", ()))
_ffi = getattr(pylibsrtp, "ffi", None) or cffi.FFI()  # buffers for the in-place API


def _error_text(rc: int) -> str:
    return _ERRORS[rc] if 0 <= rc < len(_ERRORS) else f"libsrtp error {rc}"


def _fast_path_available() -> bool:
    """True when pylibsrtp's cffi ``lib`` has libsrtp 2's ``(srtp_t, void *, int *)`` calls."""
    try:
        ffi, lib = pylibsrtp.ffi, pylibsrtp.lib
        for fn in (lib.srtp_protect, lib.srtp_unprotect, lib.srtp_protect_rtcp,
                   lib.srtp_unprotect_rtcp):
            args = ffi.typeof(fn).args
            if len(args) != 3 or ffi.getctype(args[2]) != "int *":
                return False
        probe = Session()
        return ffi.typeof(probe._srtp).cname.endswith("*")
    except Exception:  # pragma: no cover - only with an unexpected pylibsrtp
        return False


FAST_PATH_AVAILABLE = _fast_path_available()


class SrtpSession:
    """SRTP/SRTCP protect (outbound) and unprotect (inbound) for one transport.

    ``local_key`` / ``remote_key`` are master key + master salt concatenated (e.g. 16 + 14 bytes
    for AES_CM_128_HMAC_SHA1_80, 32 + 12 for AEAD_AES_256_GCM). Outbound streams are keyed with
    ``local_key``, inbound ones with ``remote_key``; both accept any SSRC. ``allow_repeat_tx`` is
    on, so protecting the same RTP packet (same SSRC and seq) twice works, as NACK
    retransmissions without RTX need, up to ``SEND_WINDOW_SIZE`` packets behind the newest.
    ``replay_window_size`` (packets, 64..32767) is the inbound replay window.

    Every method takes one packet as a bytes-like object and returns ``bytes``; failures raise
    :class:`PacketParseError` ``("srtp", reason)`` with libsrtp's reason (e.g. "authentication
    failure", "replay check failed (bad index)") or "packet too short" / "packet too long".

    Raises ValueError (message names the field) for an unknown ``crypto_suite`` or a key of the
    wrong length, TypeError for a key that is not bytes.
    """

    __slots__ = ("crypto_suite", "_tx", "_rx", "_tx_ctx", "_rx_ctx", "_buf", "_view", "_len",
                 "_fast", "_protect", "_unprotect", "_protect_rtcp", "_unprotect_rtcp")

    def __init__(self, crypto_suite: str, local_key: bytes, remote_key: bytes, *,
                 replay_window_size: int = DEFAULT_REPLAY_WINDOW_SIZE,
                 use_fast_path: bool = True) -> None:
        profile, key_len, salt_len = _suite(crypto_suite)
        _check_key("local_key", local_key, key_len + salt_len)
        _check_key("remote_key", remote_key, key_len + salt_len)
        if (not isinstance(replay_window_size, int) or isinstance(replay_window_size, bool)
                or not 64 <= replay_window_size < 0x8000):
            raise ValueError("replay_window_size: must be an int in [64, 32767]")
        self.crypto_suite = crypto_suite
        self._tx = Session(_policy(profile, bytes(local_key), Policy.SSRC_ANY_OUTBOUND,
                                   SEND_WINDOW_SIZE))
        self._rx = Session(_policy(profile, bytes(remote_key), Policy.SSRC_ANY_INBOUND,
                                   replay_window_size))
        self._fast = bool(use_fast_path and FAST_PATH_AVAILABLE)
        if self._fast:
            ffi, lib = pylibsrtp.ffi, pylibsrtp.lib
            self._tx_ctx = self._tx._srtp[0]
            self._rx_ctx = self._rx._srtp[0]
            self._buf = ffi.new("unsigned char[]", MAX_PACKET_BYTES + 148)
            self._view = ffi.buffer(self._buf)
            self._len = ffi.new("int *")
            self._protect = lib.srtp_protect
            self._unprotect = lib.srtp_unprotect
            self._protect_rtcp = lib.srtp_protect_rtcp
            self._unprotect_rtcp = lib.srtp_unprotect_rtcp
        else:
            self._tx_ctx = self._rx_ctx = self._buf = self._view = self._len = None
            self._protect = self._unprotect = self._protect_rtcp = self._unprotect_rtcp = None

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_base64(cls, crypto_suite: str, key_base64_local: str,
                    key_base64_remote: str, **kwargs: Any) -> "SrtpSession":
        """Build from mediasoup ``SrtpParameters.keyBase64`` strings (ours, then the peer's).

        Raises ValueError naming the field when a string is not base64 or has the wrong length.
        """
        return cls(crypto_suite, _b64("key_base64_local", key_base64_local),
                   _b64("key_base64_remote", key_base64_remote), **kwargs)

    @property
    def fast_path(self) -> bool:
        """True when packets go straight to libsrtp through pylibsrtp's cffi ``lib``."""
        return self._fast

    # ------------------------------------------------------------------ per packet

    def protect_rtp(self, packet: bytes) -> bytes:
        """RTP -> SRTP (RFC 3711 §3.3). Raises PacketParseError("srtp", reason)."""
        if len(packet) < _MIN_RTP_BYTES:
            raise PacketParseError("srtp", "packet too short")
        if self._fast:
            return self._run(self._protect, self._tx_ctx, packet)
        return self._slow(self._tx.protect, packet)

    def unprotect_rtp(self, packet: bytes) -> bytes:
        """SRTP -> RTP: authenticate, replay-check, decrypt. Raises PacketParseError("srtp")."""
        if len(packet) < _MIN_RTP_BYTES:
            raise PacketParseError("srtp", "packet too short")
        if self._fast:
            return self._run(self._unprotect, self._rx_ctx, packet)
        return self._slow(self._rx.unprotect, packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        """RTCP (compound) -> SRTCP (RFC 3711 §3.4). Raises PacketParseError("srtp", reason)."""
        if len(packet) < _MIN_RTCP_BYTES:
            raise PacketParseError("srtp", "packet too short")
        if self._fast:
            return self._run(self._protect_rtcp, self._tx_ctx, packet)
        return self._slow(self._tx.protect_rtcp, packet)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """SRTCP -> RTCP. Raises PacketParseError("srtp", reason)."""
        if len(packet) < _MIN_RTCP_BYTES:
            raise PacketParseError("srtp", "packet too short")
        if self._fast:
            return self._run(self._unprotect_rtcp, self._rx_ctx, packet)
        return self._slow(self._rx.unprotect_rtcp, packet)

    def protect_rtp_into(self, buf: Any, n: int) -> int:
        """Protect in place the ``n``-byte RTP packet at the start of ``buf`` (a C buffer from
        :func:`new_packet_buffer`, with ``SRTP_MAX_TRAILER_BYTES`` of room after the packet);
        returns the SRTP packet's length. The hot path's send call: no copy, no allocation
        on the fast path. Raises PacketParseError("srtp", reason)."""
        if self._fast:
            len_p = self._len
            len_p[0] = n
            rc = self._protect(self._tx_ctx, buf, len_p)
            if rc:
                raise PacketParseError("srtp", _error_text(rc))
            return len_p[0]
        return self._slow_into(self.protect_rtp, buf, n)

    def protect_rtcp_into(self, buf: Any, n: int) -> int:
        """:meth:`protect_rtp_into` for a compound RTCP packet (SRTCP, RFC 3711 §3.4)."""
        if self._fast and n >= _MIN_RTCP_BYTES:
            len_p = self._len
            len_p[0] = n
            rc = self._protect_rtcp(self._tx_ctx, buf, len_p)
            if rc:
                raise PacketParseError("srtp", _error_text(rc))
            return len_p[0]
        return self._slow_into(self.protect_rtcp, buf, n)

    def unprotect_rtp_into(self, buf: Any, n: int) -> int:
        """Authenticate, replay-check and decrypt in place the ``n``-byte SRTP packet at the
        start of ``buf``; returns the RTP length. Raises PacketParseError("srtp", reason)."""
        if self._fast and n >= _MIN_RTP_BYTES:
            len_p = self._len
            len_p[0] = n
            rc = self._unprotect(self._rx_ctx, buf, len_p)
            if rc:
                raise PacketParseError("srtp", _error_text(rc))
            return len_p[0]
        return self._slow_into(self.unprotect_rtp, buf, n)

    @property
    def raw_rtp_protect(self) -> tuple[Callable[..., int], Any, Any] | None:
        """``(fn, ctx, len_p)`` for the tightest send loop, or None without the fast path:
        ``len_p[0] = n; rc = fn(ctx, buf, len_p)`` protects the ``n``-byte RTP packet in ``buf``
        in place (rc 0: ok, the SRTP length is then ``len_p[0]``; else a libsrtp error code,
        see :meth:`error_text`). Same effect as :meth:`protect_rtp_into` minus one Python call.
        ``len_p`` is shared by this session's calls: read it before the next one."""
        if not self._fast:
            return None
        return self._protect, self._tx_ctx, self._len

    @staticmethod
    def error_text(rc: int) -> str:
        """libsrtp's name for error code ``rc``."""
        return _error_text(rc)

    @staticmethod
    def _slow_into(fn: Callable[[bytes], bytes], buf: Any, n: int) -> int:
        if not 0 <= n <= MAX_PACKET_BYTES:
            raise PacketParseError("srtp", "packet too long")
        out = fn(_ffi.buffer(buf, n)[:])
        _ffi.memmove(buf, out, len(out))
        return len(out)

    def _run(self, fn: Callable[..., int], ctx: Any, packet: bytes) -> bytes:
        # Fast path: copy into our preallocated buffer, let libsrtp work in place, copy out.
        n = len(packet)
        if n > MAX_PACKET_BYTES:
            raise PacketParseError("srtp", "packet too long")
        view = self._view
        view[0:n] = packet
        len_p = self._len
        len_p[0] = n
        rc = fn(ctx, self._buf, len_p)
        if rc:
            raise PacketParseError("srtp", _error_text(rc))
        return view[0:len_p[0]]

    @staticmethod
    def _slow(fn: Callable[[bytes], bytes], packet: bytes) -> bytes:
        if type(packet) is not bytes:
            packet = bytes(packet)
        if len(packet) > MAX_PACKET_BYTES:
            raise PacketParseError("srtp", "packet too long")
        try:
            return fn(packet)
        except pylibsrtp.Error as exc:
            raise PacketParseError("srtp", str(exc)) from None
        except ValueError:  # pylibsrtp: "packet is too long" for its 1500-byte buffer
            raise PacketParseError("srtp", "packet too long") from None


def new_packet_buffer() -> tuple[Any, memoryview]:
    """A preallocated packet buffer for :meth:`SrtpSession.protect_rtp_into`: ``(cdata, view)``,
    a C ``unsigned char[MAX_PACKET_BYTES + SRTP_MAX_TRAILER_BYTES]`` and a writable
    ``memoryview`` over the same memory (for ``struct.pack_into`` and slice assignment)."""
    buf = _ffi.new("unsigned char[]", MAX_PACKET_BYTES + SRTP_MAX_TRAILER_BYTES)
    return buf, memoryview(_ffi.buffer(buf))


def generate_srtp_parameters(crypto_suite: str = "AES_CM_128_HMAC_SHA1_80") -> dict[str, str]:
    """Random local keying for a PlainTransport / PipeTransport with SRTP enabled.

    Returns mediasoup ``SrtpParameters``: ``{"cryptoSuite": crypto_suite, "keyBase64": str}`` where
    the key is ``key_len + salt_len`` random bytes (30 for AES_CM_128_HMAC_SHA1_80, 44 for
    AEAD_AES_256_GCM, 28 for AEAD_AES_128_GCM). Raises ValueError for an unknown suite.
    """
    _profile, key_len, salt_len = _suite(crypto_suite)
    return {"cryptoSuite": crypto_suite,
            "keyBase64": base64.b64encode(os.urandom(key_len + salt_len)).decode("ascii")}


def _suite(crypto_suite: str) -> tuple[int, int, int]:
    try:
        return SRTP_CRYPTO_SUITES[crypto_suite]
    except (KeyError, TypeError):
        raise ValueError(f"crypto_suite: unsupported {crypto_suite!r}, expected one of "
                         f"{sorted(SRTP_CRYPTO_SUITES)}") from None


def _check_key(field: str, key: bytes, expected: int) -> None:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"{field}: must be bytes")
    if len(key) != expected:
        raise ValueError(f"{field}: expected {expected} bytes (master key + salt), got {len(key)}")


def _b64(field: str, value: str) -> bytes:
    if not isinstance(value, (str, bytes)):
        raise TypeError(f"{field}: must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{field}: not valid base64") from None


def _policy(profile: int, key: bytes, ssrc_type: int, window_size: int) -> Policy:
    policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile)
    policy.allow_repeat_tx = True
    policy.window_size = window_size
    return policy
