"""ICE-lite responder (RFC 8445 §2.5, §7.3), consent freshness (RFC 7675), host candidates.

:class:`IceLiteServer` is the sans-I/O counterpart of mediasoup's ``RTC::IceServer``: it never
sends checks, it answers the remote (controlling, full) agent's Binding requests, keeps the set of
validated remote tuples and the selected one, and expires consent. The owner feeds it the STUN
datagrams (``receive_stun``), sends what it returns to the same remote tuple, drains its events
and drives its timer (``next_timer_ms`` / ``handle_timer``).

Remote tuples are the address tuples the socket layer gives, ``(ip, port)``, compared by equality
(a protocol/local-socket part can be appended later: they are opaque keys here).

:func:`ice_candidates` builds the ``iceCandidates`` list of a WebRtcTransport as mediasoup does.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from aioice.stun import Class, Method

from raysfu.transport.errors import InvalidStateError, PacketParseError
from raysfu.transport.stun import build_binding_error, build_binding_success, parse_stun

__all__ = [
    "IceLiteServer",
    "ice_candidates",
    "MAX_TUPLES",
    "CONSENT_TIMEOUT_MIN_MS",
    "CONSENT_TIMEOUT_MAX_MS",
]

MAX_TUPLES = 8
"""Validated remote tuples kept at most (mediasoup ``IceServer`` MaxTuples)."""
CONSENT_TIMEOUT_MIN_MS = 10_000
CONSENT_TIMEOUT_MAX_MS = 60_000

NEW = "new"
CONNECTED = "connected"
COMPLETED = "completed"
DISCONNECTED = "disconnected"
CLOSED = "closed"

# Unambiguous: no 0/o, 1/l. All are ice-chars (RFC 8839 §5.4).
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_ICE_CHARS = frozenset(string.ascii_letters + string.digits + "+/")

_STAT_KEYS = (
    "stun_received",
    "stun_requests_valid",
    "stun_dropped_malformed",
    "stun_dropped_not_request",
    "stun_dropped_bad_request",
    "stun_dropped_bad_credentials",
    "stun_dropped_role_conflict",
    "stun_dropped_closed",
    "responses_sent",
)


def _random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _check_credential(value: Any, name: str, min_len: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str")
    if not min_len <= len(value) <= 256 or not _ICE_CHARS.issuperset(value):
        raise ValueError(
            f"{name} must be {min_len}..256 ice-chars (letters, digits, '+', '/'), got {value!r}"
        )
    return value


class IceLiteServer:
    """ICE-lite agent in the controlled role (RFC 8445 §2.5), as mediasoup's ``IceServer``.

    ``username_fragment`` (4..256 ice-chars, random 16 if None) and ``password`` (22..256
    ice-chars, random 32 if None) are our ICE credentials. ``consent_timeout_ms`` is mediasoup's
    ``iceConsentTimeout`` in ms: 0 disables consent expiry, otherwise 10000..60000 (ValueError
    naming ``ice_consent_timeout``; TypeError if not an int).

    States: ``"new"`` → ``"connected"`` (a valid check) → ``"completed"`` (a nominated check:
    USE-CANDIDATE, or NOMINATION greater than the last one) → ``"disconnected"`` (consent
    expired or the selected tuple removed; tuples cleared) → back to connected/completed on the
    next valid check; ``"closed"`` after :meth:`close`.

    Events (pulled with :meth:`drain_events`), in mediasoup's order: ``("selected_tuple",
    remote)`` when the selected tuple changes to a tuple (not emitted when it is cleared: the
    ``disconnected`` state says so), ``("state", state)`` on every state change.
    """

    __slots__ = (
        "_ufrag",
        "_password",
        "_consent_timeout_ms",
        "_state",
        "_tuples",
        "_selected",
        "_remote_nomination",
        "_events",
        "_stats",
    )

    def __init__(
        self,
        username_fragment: str | None = None,
        password: str | None = None,
        *,
        consent_timeout_ms: int = 30_000,
    ) -> None:
        self._ufrag = (
            _random_token(16)
            if username_fragment is None
            else _check_credential(username_fragment, "username_fragment", 4)
        )
        self._password = (
            _random_token(32) if password is None else _check_credential(password, "password", 22)
        )
        if type(consent_timeout_ms) is not int:
            raise TypeError("ice_consent_timeout (consent_timeout_ms) must be an int of ms")
        if consent_timeout_ms != 0 and not (
            CONSENT_TIMEOUT_MIN_MS <= consent_timeout_ms <= CONSENT_TIMEOUT_MAX_MS
        ):
            raise ValueError(
                "ice_consent_timeout must be 0 (disabled) or 10..60 s, got "
                f"consent_timeout_ms={consent_timeout_ms}"
            )
        self._consent_timeout_ms = consent_timeout_ms
        self._state = NEW
        # remote tuple -> last_consent_ms; insertion order = age (oldest first).
        self._tuples: dict[Any, int] = {}
        self._selected: Any = None
        self._remote_nomination = 0
        self._events: list[tuple[str, Any]] = []
        self._stats = dict.fromkeys(_STAT_KEYS, 0)

    # -- properties --------------------------------------------------------------------------

    @property
    def username_fragment(self) -> str:
        """Our ICE username fragment (``usernameFragment``)."""
        return self._ufrag

    @property
    def password(self) -> str:
        """Our ICE password."""
        return self._password

    @property
    def state(self) -> str:
        """``"new" | "connected" | "completed" | "disconnected" | "closed"``."""
        return self._state

    @property
    def selected_tuple(self) -> Any:
        """The remote tuple ``(ip, port)`` media goes to, or None."""
        return self._selected

    @property
    def tuples(self) -> list[Any]:
        """Validated remote tuples, oldest first (at most :data:`MAX_TUPLES`)."""
        return list(self._tuples)

    @property
    def consent_timeout_ms(self) -> int:
        """Consent expiry in ms, 0 if disabled."""
        return self._consent_timeout_ms

    @property
    def ice_parameters(self) -> dict[str, Any]:
        """mediasoup's ``IceParameters``: ``{"usernameFragment", "password", "iceLite": True}``."""
        return {"usernameFragment": self._ufrag, "password": self._password, "iceLite": True}

    @property
    def stats(self) -> dict[str, int]:
        """A copy of the counters.

        ``stun_received`` (every call of :meth:`receive_stun`) equals the sum of the outcomes:
        ``stun_requests_valid`` (answered 200), ``stun_dropped_malformed`` (unparsable, bad or
        missing FINGERPRINT: no answer), ``stun_dropped_not_request`` (indications, responses: no
        answer), ``stun_dropped_bad_request`` (400), ``stun_dropped_bad_credentials`` (401),
        ``stun_dropped_role_conflict`` (487), ``stun_dropped_closed`` (after close).
        ``responses_sent`` counts every response returned (200 and errors).
        """
        return dict(self._stats)

    # -- receive path ------------------------------------------------------------------------

    def receive_stun(self, data: bytes, remote: Any, now_ms: int) -> bytes | None:
        """Handle one datagram classified as STUN (RFC 7983) from ``remote`` at ``now_ms``.

        Returns the response to send back to ``remote`` (bytes), or None when nothing is to be
        sent. Never raises for bad ``data``: every outcome is counted (see :attr:`stats`).

        Binding request checks (RFC 8489 §6.3, §9.1.3; RFC 8445 §7.3), as mediasoup:

        1. parses and has a valid FINGERPRINT, else dropped (no answer);
        2. a request, else dropped (indications, e.g. keepalives, refresh nothing);
        3. method Binding, USERNAME and MESSAGE-INTEGRITY present, else 400;
        4. USERNAME starts with ``"<our ufrag>:"`` and MESSAGE-INTEGRITY verifies with our
           password, else 401;
        5. PRIORITY present, else 400;
        6. no ICE-CONTROLLED (the peer of a lite agent must be controlling), else 487;
        7. 200 with XOR-MAPPED-ADDRESS = ``remote``; the tuple is validated, its consent
           refreshed (RFC 7675) and the state updated (USE-CANDIDATE / NOMINATION select it).
        """
        stats = self._stats
        stats["stun_received"] += 1
        if self._state == CLOSED:
            stats["stun_dropped_closed"] += 1
            return None
        try:
            request = parse_stun(data)
        except PacketParseError:
            stats["stun_dropped_malformed"] += 1
            return None
        attrs = request.attributes
        if "FINGERPRINT" not in attrs:
            stats["stun_dropped_malformed"] += 1
            return None
        if request.message_class != Class.REQUEST:
            stats["stun_dropped_not_request"] += 1
            return None
        if request.message_method != Method.BINDING:
            return self._error(request, 400, "Bad Request", "stun_dropped_bad_request")
        username = attrs.get("USERNAME")
        if username is None or "MESSAGE-INTEGRITY" not in attrs:
            return self._error(request, 400, "Bad Request", "stun_dropped_bad_request")
        ufrag = self._ufrag
        if (
            len(username) <= len(ufrag)
            or username[len(ufrag)] != ":"
            or not username.startswith(ufrag)
            or not request.check_message_integrity(self._password.encode())
        ):
            return self._error(request, 401, "Unauthorized", "stun_dropped_bad_credentials")
        if "PRIORITY" not in attrs:
            return self._error(request, 400, "Bad Request", "stun_dropped_bad_request")
        if "ICE-CONTROLLED" in attrs:
            return self._error(
                request, 487, "Role Conflict", "stun_dropped_role_conflict", self._password
            )
        response = build_binding_success(request, remote, self._password)
        stats["stun_requests_valid"] += 1
        stats["responses_sent"] += 1
        self._handle_tuple(remote, "USE-CANDIDATE" in attrs, request.nomination, now_ms)
        return response

    def _error(
        self, request: Any, code: int, reason: str, counter: str, password: str | None = None
    ) -> bytes:
        self._stats[counter] += 1
        self._stats["responses_sent"] += 1
        return build_binding_error(request, code, reason, password)

    def _handle_tuple(
        self, remote: Any, use_candidate: bool, nomination: int | None, now_ms: int
    ) -> None:
        # mediasoup IceServer::HandleTuple, the four states folded together.
        self._add_tuple(remote, now_ms)
        state = self._state
        if not use_candidate and nomination is None:
            if state == NEW or state == DISCONNECTED:
                self._select(remote)
                self._set_state(CONNECTED)
            return
        if nomination is None or nomination > self._remote_nomination:
            if nomination is not None:
                self._remote_nomination = nomination
            self._select(remote)
            self._set_state(COMPLETED)

    def _add_tuple(self, remote: Any, now_ms: int) -> None:
        tuples = self._tuples
        known = remote in tuples
        tuples[remote] = now_ms  # consent refreshed; an existing key keeps its age
        if known or len(tuples) <= MAX_TUPLES:
            return
        for old in tuples:  # oldest first; never the one just added nor the selected one
            if old != remote and old != self._selected:
                del tuples[old]
                return

    def _select(self, remote: Any) -> None:
        if remote != self._selected:
            self._selected = remote
            if remote is not None:
                self._events.append(("selected_tuple", remote))

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._events.append(("state", state))

    def _disconnect(self) -> None:
        self._tuples.clear()
        self._selected = None
        self._remote_nomination = 0
        self._set_state(DISCONNECTED)

    # -- queries -----------------------------------------------------------------------------

    def is_valid_tuple(self, remote: Any) -> bool:
        """True if ``remote`` passed a connectivity check and was not evicted since.

        The transport accepts DTLS/RTP/RTCP only from valid tuples (mediasoup ``IsValidTuple``).
        """
        return remote in self._tuples

    # -- timers ------------------------------------------------------------------------------

    def next_timer_ms(self) -> int | None:
        """Monotonic ms at which :meth:`handle_timer` must run, or None (no consent timer).

        The consent deadline is the selected tuple's last valid request + ``consent_timeout_ms``
        (RFC 7675 §5.1), in states connected/completed with consent enabled.
        """
        if not self._consent_timeout_ms or self._selected is None:
            return None
        if self._state != CONNECTED and self._state != COMPLETED:
            return None
        return self._tuples[self._selected] + self._consent_timeout_ms

    def handle_timer(self, now_ms: int) -> None:
        """Expire consent: when ``now_ms`` reaches :meth:`next_timer_ms`, go ``"disconnected"``
        and clear every tuple (mediasoup ``IceServer::OnTimer``). Safe to call at any time."""
        deadline = self.next_timer_ms()
        if deadline is not None and now_ms >= deadline:
            self._disconnect()

    # -- control -----------------------------------------------------------------------------

    def remove_tuple(self, remote: Any, now_ms: int) -> None:
        """Forget ``remote`` (e.g. its TCP connection closed; mediasoup ``RemoveTuple``).

        If it was the selected tuple and others remain in connected/completed, the newest one is
        selected and its consent refreshed at ``now_ms``; otherwise the state goes
        ``"disconnected"``. Unknown tuples are ignored.
        """
        if self._tuples.pop(remote, None) is None or remote != self._selected:
            return
        self._selected = None
        if self._tuples and (self._state == CONNECTED or self._state == COMPLETED):
            newest = next(reversed(self._tuples))
            self._tuples[newest] = now_ms
            self._select(newest)
        else:
            self._disconnect()

    def restart(
        self,
        username_fragment: str | None = None,
        password: str | None = None,
        *,
        now_ms: int | None = None,
    ) -> dict[str, Any]:
        """ICE restart (mediasoup ``restartIce``): new credentials, random if None.

        The old credentials stop working at once (checks with them get 401); tuples, selection
        and state stay until the peer checks again with the new ones. The remote nomination
        counter restarts at 0. With ``now_ms``, the selected tuple's consent is refreshed (as
        mediasoup restarts its consent timer) to give the peer time to re-check.
        Returns the new :attr:`ice_parameters`. Raises InvalidStateError if closed,
        TypeError/ValueError for bad credentials.
        """
        if self._state == CLOSED:
            raise InvalidStateError("IceLiteServer closed")
        ufrag = (
            _random_token(16)
            if username_fragment is None
            else _check_credential(username_fragment, "username_fragment", 4)
        )
        pwd = _random_token(32) if password is None else _check_credential(password, "password", 22)
        self._ufrag, self._password = ufrag, pwd
        self._remote_nomination = 0
        if now_ms is not None and self._selected is not None:
            self._tuples[self._selected] = now_ms
        return self.ice_parameters

    def close(self) -> None:
        """Close: tuples cleared, state ``"closed"`` (one event); idempotent."""
        if self._state == CLOSED:
            return
        self._tuples.clear()
        self._selected = None
        self._set_state(CLOSED)

    def drain_events(self) -> list[tuple[str, Any]]:
        """Return and forget the pending events: ``("state", str)`` and
        ``("selected_tuple", remote)``, oldest first."""
        events = self._events
        self._events = []
        return events

    def dump(self) -> dict[str, Any]:
        """Debug snapshot: role, credentials, state, tuples, selected tuple and counters."""
        return {
            "iceRole": "controlled",
            "iceParameters": self.ice_parameters,
            "iceState": self._state,
            "iceSelectedTuple": self._selected,
            "tuples": list(self._tuples),
            "stats": dict(self._stats),
        }


# -- candidates --------------------------------------------------------------------------------

ICE_TYPE_PREFERENCE_HOST = 64
ICE_LOCAL_PREFERENCE_DEFAULT = 10_000
ICE_LOCAL_PREFERENCE_STEP = 100
ICE_LOCAL_PREFERENCE_PREFERRED_BONUS = 1_000
ICE_COMPONENT = 1  # rtcp-mux only


def candidate_priority(local_preference: int) -> int:
    """RFC 8445 §5.1.2.1 priority of a host candidate, component 1:
    ``2**24 * 64 + 2**8 * local_preference + (256 - 1)``."""
    return (
        (ICE_TYPE_PREFERENCE_HOST << 24) + (local_preference << 8) + (256 - ICE_COMPONENT)
    )


def ice_candidates(
    listen: list[dict[str, Any]], *, prefer_udp: bool = False, prefer_tcp: bool = False
) -> list[dict[str, Any]]:
    """mediasoup's ``iceCandidates`` for bound sockets, in ``listen`` order.

    ``listen``: ``[{"protocol": "udp" | "tcp", "ip": str, "announcedAddress": str | None,
    "port": int}]``, one per bound socket (``announcedIp`` is accepted as the legacy name).
    Returns ``[{"foundation": "udpcandidate" | "tcpcandidate", "priority": int, "ip": address,
    "address": address, "protocol", "port", "type": "host", "tcpType": "passive" (tcp only)}]``
    where address is ``announcedAddress`` or else ``ip``.

    Priority as mediasoup's WebRtcTransport/WebRtcServer: type preference 64 (host), local
    preference 10000 minus 100 per earlier listen entry, plus 1000 for UDP entries when
    ``prefer_udp`` and TCP entries when ``prefer_tcp``; component 1. Raises TypeError/ValueError
    naming ``listen[i].<field>``; at most 100 entries (the local preference stays positive).
    """
    if not isinstance(listen, (list, tuple)):
        raise TypeError("listen must be a list of dicts")
    if len(listen) > ICE_LOCAL_PREFERENCE_DEFAULT // ICE_LOCAL_PREFERENCE_STEP:
        raise ValueError("listen: at most 100 entries")
    candidates = []
    for i, info in enumerate(listen):
        if not isinstance(info, dict):
            raise TypeError(f"listen[{i}] must be a dict")
        protocol = info.get("protocol")
        if protocol not in ("udp", "tcp"):
            raise ValueError(f"listen[{i}].protocol must be 'udp' or 'tcp', got {protocol!r}")
        ip = info.get("ip")
        if not isinstance(ip, str) or not ip:
            raise TypeError(f"listen[{i}].ip must be a non-empty str")
        announced = info.get("announcedAddress", info.get("announcedIp"))
        if announced is not None and not isinstance(announced, str):
            raise TypeError(f"listen[{i}].announcedAddress must be a str or None")
        port = info.get("port")
        if type(port) is not int or not 1 <= port <= 0xFFFF:
            raise ValueError(f"listen[{i}].port must be a bound port 1..65535, got {port!r}")
        local_preference = ICE_LOCAL_PREFERENCE_DEFAULT - ICE_LOCAL_PREFERENCE_STEP * i
        if (protocol == "udp" and prefer_udp) or (protocol == "tcp" and prefer_tcp):
            local_preference += ICE_LOCAL_PREFERENCE_PREFERRED_BONUS
        address = announced or ip
        candidate: dict[str, Any] = {
            "foundation": f"{protocol}candidate",
            "priority": candidate_priority(local_preference),
            "ip": address,
            "address": address,
            "protocol": protocol,
            "port": port,
            "type": "host",
        }
        if protocol == "tcp":
            candidate["tcpType"] = "passive"
        candidates.append(candidate)
    return candidates
