"""STUN Binding messages for ICE (RFC 8489, RFC 8445 §7), over aioice's STUN codec.

aioice (``aioice.stun``) encodes and decodes attributes; this module adds what an ICE-lite
server needs on top of it:

- :func:`parse_stun`: strict parsing (header, magic cookie, length, attribute bounds, FINGERPRINT
  last, MESSAGE-INTEGRITY length; RFC 8489 §5, §14) and the NOMINATION attribute
  (0xC001, draft-thatcher-ice-renomination) that aioice does not know. Every malformation is one
  exception type, :class:`~raysfu.transport.errors.PacketParseError` with ``kind == "stun"``.
- :func:`build_binding_success`, :func:`build_binding_error`: the responses of an ICE-lite
  server (mediasoup's ``StunPacket::CreateSuccessResponse`` / ``CreateErrorResponse``).
- :func:`build_binding_request`: the connectivity check of a controlling ICE agent, as Chrome
  sends it (for tests and the load generator).

Short-term credentials (RFC 8489 §9.1): the MESSAGE-INTEGRITY key is the password's UTF-8 bytes
(no SASLprep for ICE passwords, whose characters are ice-chars only). Sent messages always end
with FINGERPRINT (RFC 8445 §7.2.2 / RFC 7983).
"""

from __future__ import annotations

import secrets
import struct
from typing import Any

from aioice.stun import (
    COOKIE,
    Class,
    Message,
    Method,
    message_fingerprint,
    message_integrity,
    parse_message,
)

from raysfu.transport.errors import PacketParseError

__all__ = [
    "StunMessage",
    "Class",
    "Method",
    "parse_stun",
    "build_binding_success",
    "build_binding_error",
    "build_binding_request",
    "ATTR_MESSAGE_INTEGRITY",
    "ATTR_FINGERPRINT",
    "ATTR_NOMINATION",
]

ATTR_MESSAGE_INTEGRITY = 0x0008
ATTR_FINGERPRINT = 0x8028
ATTR_NOMINATION = 0xC001  # draft-thatcher-ice-renomination, as mediasoup and libwebrtc

_HEADER = struct.Struct("!HHI12s")
_ATTR = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_LENGTH = struct.Struct("!H")
_FINGERPRINT_TLV = struct.Struct("!HHI")
_INTEGRITY_TLV_HEAD = _ATTR.pack(ATTR_MESSAGE_INTEGRITY, 20)
_NOMINATION_TLV = struct.Struct("!HHI")

_U32_MAX = 0xFFFFFFFF
_U64_MAX = 0xFFFFFFFFFFFFFFFF


class StunMessage(Message):
    """An ``aioice.stun.Message`` plus the NOMINATION attribute value.

    ``attributes`` is aioice's dict keyed by attribute name (``"USERNAME": str``,
    ``"PRIORITY": int``, ``"USE-CANDIDATE": None``, ``"ICE-CONTROLLING": int`` (64-bit
    tie-breaker), ``"MESSAGE-INTEGRITY": bytes``, ``"FINGERPRINT": int``,
    ``"XOR-MAPPED-ADDRESS": (ip, port)``, ``"ERROR-CODE": (code, reason)``, ...).
    ``nomination`` is the 32-bit NOMINATION value, or None when the attribute is absent.
    ``check_message_integrity(password.encode())`` verifies MESSAGE-INTEGRITY (aioice).
    """

    nomination: int | None = None


def _fail(reason: str) -> PacketParseError:
    return PacketParseError("stun", reason)


def parse_stun(data: bytes) -> StunMessage:
    """Parse one STUN message (RFC 8489 §5, §14) strictly.

    ``data`` is the whole datagram (bytes-like). Checks, in order: at least the 20-byte header,
    the two top bits of the type zero, the magic cookie 0x2112A442, the length field equal to
    ``len(data) - 20`` and a multiple of 4, every attribute inside the message, MESSAGE-INTEGRITY
    20 bytes, FINGERPRINT 4 bytes and last, NOMINATION 4 bytes, and the FINGERPRINT CRC (aioice);
    the method must be one aioice knows. MESSAGE-INTEGRITY is *not* checked here (it needs the
    password): call ``message.check_message_integrity(key)``. Attributes after
    MESSAGE-INTEGRITY other than FINGERPRINT are ignored (RFC 8489 §14.5).

    Returns a :class:`StunMessage`. Raises :class:`PacketParseError` (``kind="stun"``) for any
    malformation, including every error aioice's decoder raises.
    """
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n < 20:
        raise _fail(f"{n} bytes, shorter than the 20-byte header")
    msg_type, length, cookie, _tid = _HEADER.unpack_from(data)
    if msg_type & 0xC000:
        raise _fail("the two most significant bits of the message type are not zero")
    if cookie != COOKIE:
        raise _fail(f"bad magic cookie 0x{cookie:08x}")
    if length != n - 20 or length & 3:
        raise _fail(f"length field {length} does not match {n - 20} body bytes (or not a multiple of 4)")
    pos = 20
    nomination = None
    after_integrity = False
    while pos < n:
        attr_type, attr_len = _ATTR.unpack_from(data, pos)
        end = pos + 4 + attr_len
        if end > n:
            raise _fail(f"attribute 0x{attr_type:04x} of {attr_len} bytes overruns the message")
        if attr_type == ATTR_FINGERPRINT:
            if attr_len != 4 or end != n:
                raise _fail("FINGERPRINT must be 4 bytes and the last attribute")
        elif attr_type == ATTR_MESSAGE_INTEGRITY:
            if attr_len != 20:
                raise _fail(f"MESSAGE-INTEGRITY must be 20 bytes, got {attr_len}")
            after_integrity = True
        elif attr_type == ATTR_NOMINATION and not after_integrity:
            if attr_len != 4:
                raise _fail(f"NOMINATION must be 4 bytes, got {attr_len}")
            nomination = _U32.unpack_from(data, pos + 4)[0]
        pos = end + (-attr_len & 3)
    if pos != n:
        raise _fail("attribute padding overruns the message")
    try:
        parsed = parse_message(data)
    except Exception as exc:  # aioice raises ValueError, struct.error, UnicodeDecodeError, ...
        raise _fail(f"{type(exc).__name__}: {exc}") from exc
    message = StunMessage(
        parsed.message_method, parsed.message_class, parsed.transaction_id, parsed.attributes
    )
    # aioice keeps the bytes covered by MESSAGE-INTEGRITY on the instance; carry them over so
    # that check_message_integrity() works on our subclass.
    message._integrity_data = parsed._integrity_data
    message.nomination = nomination
    return message


def _set_length(data: bytes) -> bytes:
    return data[:2] + _LENGTH.pack(len(data) - 20) + data[4:]


def _seal(body: bytes, key: bytes | None) -> bytes:
    """Append MESSAGE-INTEGRITY (if ``key``) then FINGERPRINT to a serialized message.

    ``body`` is a complete message without either attribute; the header length is rewritten
    (RFC 8489 §14.5, §14.7).
    """
    if key is not None:
        digest = message_integrity(body, key)
        body = _set_length(body + _INTEGRITY_TLV_HEAD + digest)
    crc = message_fingerprint(body)
    return _set_length(body + _FINGERPRINT_TLV.pack(ATTR_FINGERPRINT, 4, crc))


def _check_address(value: Any, name: str) -> tuple[str, int]:
    if not isinstance(value, tuple) or len(value) < 2:
        raise TypeError(f"{name} must be an (ip, port) tuple, got {value!r}")
    ip, port = value[0], value[1]
    if not isinstance(ip, str) or type(port) is not int or not 0 <= port <= 0xFFFF:
        raise ValueError(f"{name} must be (ip: str, port: int 0..65535), got {value!r}")
    return ip, port


def build_binding_success(
    request: Message, xor_mapped_address: tuple[str, int], password: str
) -> bytes:
    """Serialize the Binding success response to ``request`` (RFC 8489 §7.3.1, RFC 8445 §7.3.1.2).

    Attributes: XOR-MAPPED-ADDRESS = ``xor_mapped_address`` ``(ip, port)`` (the request's source,
    IPv4 or IPv6; extra tuple items such as IPv6 flowinfo are ignored), MESSAGE-INTEGRITY keyed
    with ``password`` (ours: the server's ICE password), FINGERPRINT. Same transaction id as the
    request. Raises TypeError/ValueError for a bad address or password.
    """
    ip, port = _check_address(xor_mapped_address, "xor_mapped_address")
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    message = Message(
        Method.BINDING, Class.RESPONSE, request.transaction_id, {"XOR-MAPPED-ADDRESS": (ip, port)}
    )
    try:
        body = bytes(message)
    except ValueError as exc:  # ipaddress rejects the ip
        raise ValueError(f"xor_mapped_address: {exc}") from exc
    return _seal(body, password.encode())


def build_binding_error(
    request: Message, code: int, reason: str, password: str | None = None
) -> bytes:
    """Serialize an error response to ``request`` (RFC 8489 §6.3.4, §14.8).

    ``code`` is the error code 300..699 (400 Bad Request, 401 Unauthorized, 487 Role Conflict,
    ...), ``reason`` its UTF-8 reason phrase. The method and transaction id are the request's.
    Ends with FINGERPRINT. MESSAGE-INTEGRITY is added only when ``password`` is given: RFC 8489
    §9.1.3 forbids it on 400/401 for missing/bad credentials and asks for it when the request was
    authenticated (e.g. 487). Raises ValueError if ``code`` is out of range, TypeError for wrong
    types.
    """
    if type(code) is not int:
        raise TypeError("code must be an int")
    if not 300 <= code <= 699:
        raise ValueError(f"code must be in 300..699, got {code}")
    if not isinstance(reason, str):
        raise TypeError("reason must be a str")
    message = Message(
        request.message_method, Class.ERROR, request.transaction_id, {"ERROR-CODE": (code, reason)}
    )
    return _seal(bytes(message), password.encode() if password is not None else None)


def build_binding_request(
    username: str,
    password: str,
    *,
    priority: int,
    tie_breaker: int | None = None,
    use_candidate: bool = False,
    nomination: int | None = None,
    controlling: bool = True,
    transaction_id: bytes | None = None,
) -> bytes:
    """Serialize an ICE connectivity check, a Binding request (RFC 8445 §7.2.2).

    - ``username``: ``"<remote ufrag>:<local ufrag>"`` (the responder's fragment first);
    - ``password``: the *responder's* ICE password, the MESSAGE-INTEGRITY key;
    - ``priority``: PRIORITY, 1..2**32-1 (RFC 8445 §5.1.2);
    - ``tie_breaker``: 64-bit ICE-CONTROLLING (or ICE-CONTROLLED) value, random if None;
    - ``use_candidate``: add USE-CANDIDATE (aggressive/regular nomination);
    - ``nomination``: add NOMINATION (0xC001) with this 32-bit value (renomination);
    - ``controlling``: False sends ICE-CONTROLLED instead (provokes 487 at a lite server);
    - ``transaction_id``: 12 bytes, random if None.

    Attribute order as Chrome: USERNAME, ICE-CONTROLLING, USE-CANDIDATE, PRIORITY, NOMINATION,
    MESSAGE-INTEGRITY, FINGERPRINT. Raises TypeError/ValueError naming the bad argument.
    """
    if not isinstance(username, str) or not isinstance(password, str):
        raise TypeError("username and password must be str")
    if type(priority) is not int or not 1 <= priority <= _U32_MAX:
        raise ValueError(f"priority must be an int in 1..2**32-1, got {priority!r}")
    if tie_breaker is None:
        tie_breaker = secrets.randbits(64)
    elif type(tie_breaker) is not int or not 0 <= tie_breaker <= _U64_MAX:
        raise ValueError(f"tie_breaker must be a 64-bit unsigned int, got {tie_breaker!r}")
    if nomination is not None and (type(nomination) is not int or not 0 <= nomination <= _U32_MAX):
        raise ValueError(f"nomination must be a 32-bit unsigned int, got {nomination!r}")
    if transaction_id is not None and (
        not isinstance(transaction_id, bytes) or len(transaction_id) != 12
    ):
        raise ValueError("transaction_id must be 12 bytes")
    attributes: dict[str, Any] = {"USERNAME": username}
    attributes["ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"] = tie_breaker
    if use_candidate:
        attributes["USE-CANDIDATE"] = None
    attributes["PRIORITY"] = priority
    body = bytes(Message(Method.BINDING, Class.REQUEST, transaction_id, attributes))
    if nomination is not None:
        body = _set_length(body + _NOMINATION_TLV.pack(ATTR_NOMINATION, 4, nomination))
    return _seal(body, password.encode())
