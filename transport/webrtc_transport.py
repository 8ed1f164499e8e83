"""WebRtcTransport core: ICE-lite + DTLS + SRTP behind one sans-I/O receive call.

The actor owns the sockets and the clock; this object owns the protocol state. One call per UDP
datagram, :meth:`WebRtcTransportCore.receive_datagram`, classifies it by its first byte
(RFC 7983 §7) and either answers it (STUN, DTLS: the answers are pulled with
:meth:`datagrams_to_send`) or returns decrypted RTP/RTCP for the router.

Behaviour follows mediasoup's ``WebRtcTransport.cpp``:

- ICE-lite, controlled role; media and DTLS are accepted only from a tuple that passed a
  valid STUN binding request (``IceLiteServer.is_valid_tuple``);
- ``connect(dtls_parameters)`` picks the local DTLS role from the remote one (remote "client" →
  local "server"; remote "server" or "auto" → local "client");
- DTLS starts once both ``connect()`` was called and ICE is connected or completed; DTLS datagrams
  that arrive earlier are kept (up to 8) and fed in then;
- SRTP keys come from the DTLS exporter (RFC 5764 §4.2) once DTLS is connected.

Every datagram that is not used increments one named counter in :attr:`drops`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .demux import is_rtcp
from .dtls import DtlsCertificate, DtlsSession
from .errors import InvalidStateError, PacketParseError
from .ice import IceLiteServer
from .srtp import SrtpSession

#: ``receive_datagram`` results: nothing for the router, decrypted RTP, decrypted RTCP.
NONE, RTP, RTCP = 0, 1, 2

_DTLS_ALGORITHMS = ("sha-1", "sha-224", "sha-256", "sha-384", "sha-512")
_EARLY_DTLS_MAX = 8


def validate_dtls_parameters(dtls_parameters: Any) -> dict:
    """Check a mediasoup ``DtlsParameters`` dict and return a normalised copy.

    Shape: ``{"role"?: "auto"|"client"|"server", "fingerprints": [{"algorithm", "value"}]}``.
    Raises ``TypeError`` naming the bad field.
    """
    if not isinstance(dtls_parameters, dict):
        raise TypeError("dtls_parameters must be a dict")
    role = dtls_parameters.get("role", "auto")
    if role not in ("auto", "client", "server"):
        raise TypeError("dtls_parameters.role must be 'auto', 'client' or 'server'")
    fingerprints = dtls_parameters.get("fingerprints")
    if not isinstance(fingerprints, list) or not fingerprints:
        raise TypeError("dtls_parameters.fingerprints must be a non-empty list")
    out = []
    for i, fp in enumerate(fingerprints):
        if not isinstance(fp, dict):
            raise TypeError(f"dtls_parameters.fingerprints[{i}] must be a dict")
        algorithm = fp.get("algorithm")
        value = fp.get("value")
        if algorithm not in _DTLS_ALGORITHMS:
            raise TypeError(f"dtls_parameters.fingerprints[{i}].algorithm is not supported: {algorithm!r}")
        if not isinstance(value, str) or not value:
            raise TypeError(f"dtls_parameters.fingerprints[{i}].value must be a non-empty string")
        out.append({"algorithm": algorithm, "value": value})
    return {"role": role, "fingerprints": out}


class WebRtcTransportCore:
    """Sans-I/O ICE-lite + DTLS + SRTP for one WebRtcTransport.

    ``remote`` arguments are opaque hashable tuples that identify where a datagram came from
    (the actor uses ``(socket_index, ip, port)``).

    Pulled outputs:
    - :meth:`datagrams_to_send` → ``[(bytes, remote)]`` STUN answers and DTLS flights;
    - :meth:`drain_events` → ``[(name, value)]`` with names ``"icestatechange"`` (str),
      ``"iceselectedtuplechange"`` (remote), ``"dtlsstatechange"`` (str);
    - :meth:`next_timer_ms` / :meth:`handle_timer` for ICE consent and DTLS retransmission.
    """

    def __init__(
        self,
        certificate: DtlsCertificate,
        *,
        ice_consent_timeout_ms: int = 30000,
        srtp_crypto_suites: list[str] | None = None,
    ) -> None:
        self.certificate = certificate
        self.ice = IceLiteServer(consent_timeout_ms=ice_consent_timeout_ms)
        self.dtls: DtlsSession | None = None
        self.dtls_role: str | None = None
        self.srtp: SrtpSession | None = None
        self.remote_dtls_parameters: dict | None = None
        self._srtp_crypto_suites = srtp_crypto_suites
        self._early_dtls: list[tuple[bytes, Any]] = []
        self._dtls_started = False
        self._dtls_remote: Any = None
        self._out: list[tuple[bytes, Any]] = []
        self._events: list[tuple[str, Any]] = []
        self._dtls_state = "new"
        self.closed = False
        self.drops: Counter[str] = Counter()
        self.connect_called = False
        self._application_data: list[bytes] = []  # data channels (issue 7)

    # ------------------------------------------------------------------ properties
    @property
    def ice_parameters(self) -> dict:
        """mediasoup ``IceParameters``: ``{"usernameFragment", "password", "iceLite": True}``."""
        return self.ice.ice_parameters

    @property
    def dtls_parameters(self) -> dict:
        """mediasoup ``DtlsParameters`` of our side: ``{"role", "fingerprints"}``.

        Role is "auto" until ``connect()`` decides it (mediasoup behaviour).
        """
        return {"role": self.dtls_role or "auto", "fingerprints": self.certificate.fingerprints}

    @property
    def ice_state(self) -> str:
        return self.ice.state

    @property
    def dtls_state(self) -> str:
        return self._dtls_state

    @property
    def selected_tuple(self) -> Any:
        return self.ice.selected_tuple

    @property
    def connected(self) -> bool:
        """True when SRTP keys exist and ICE has a selected tuple: media can flow."""
        return self.srtp is not None and self.ice.selected_tuple is not None

    # ------------------------------------------------------------------ control
    def connect(self, dtls_parameters: dict, now_ms: int) -> str:
        """Apply the remote ``DtlsParameters``; returns the local DTLS role ("client"|"server").

        Raises ``TypeError`` for bad parameters, ``InvalidStateError`` if called twice
        (mediasoup: "connect() already called").
        """
        if self.closed:
            raise InvalidStateError("transport closed")
        params = validate_dtls_parameters(dtls_parameters)
        if self.connect_called:
            raise InvalidStateError("connect() already called")
        self.connect_called = True
        self.remote_dtls_parameters = params
        self.dtls_role = "server" if params["role"] == "client" else "client"
        self.dtls = DtlsSession(
            self.certificate,
            role=self.dtls_role,
            remote_fingerprints=params["fingerprints"],
            srtp_crypto_suites=self._srtp_crypto_suites,
        )
        self._maybe_start_dtls(now_ms)
        return self.dtls_role

    def restart_ice(self) -> dict:
        """New ICE credentials (mediasoup ``restartIce()``); returns the new ``IceParameters``."""
        if self.closed:
            raise InvalidStateError("transport closed")
        return self.ice.restart()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.dtls is not None and self._dtls_state == "connected":
            self.dtls.close()
            self._flush_dtls()
        self.ice.close()
        self._set_dtls_state("closed")

    # ------------------------------------------------------------------ datagrams
    def receive_datagram(self, data: bytes, remote: Any, now_ms: int) -> tuple[int, bytes | None]:
        """Handle one UDP datagram from ``remote``.

        Returns ``(RTP, plaintext)``, ``(RTCP, plaintext)`` or ``(NONE, None)``. Never raises for
        bad input: every unusable datagram increments one counter of :attr:`drops`.
        """
        if not data:
            self.drops["empty"] += 1
            return NONE, None
        b0 = data[0]
        if 127 < b0 < 192:
            if not self.ice.is_valid_tuple(remote):
                self.drops["rtp_unvalidated_tuple"] += 1
                return NONE, None
            srtp = self.srtp
            if srtp is None:
                self.drops["rtp_before_dtls"] += 1
                return NONE, None
            if len(data) < 12:
                self.drops["rtp_too_short"] += 1
                return NONE, None
            try:
                if is_rtcp(data):
                    return RTCP, srtp.unprotect_rtcp(data)
                return RTP, srtp.unprotect_rtp(data)
            except PacketParseError:
                self.drops["srtp_unprotect_failed"] += 1
                return NONE, None
        if b0 < 4:
            try:
                response = self.ice.receive_stun(data, remote, now_ms)
            except Exception:  # the ICE server counts its own drops; this is a last guard
                self.drops["stun_error"] += 1
                return NONE, None
            if response is not None:
                self._out.append((response, remote))
            self._pull_ice_events(now_ms)
            return NONE, None
        if 19 < b0 < 64:
            self._receive_dtls(data, remote, now_ms)
            return NONE, None
        self.drops["unknown_first_byte"] += 1
        return NONE, None

    def _receive_dtls(self, data: bytes, remote: Any, now_ms: int) -> None:
        if not self.ice.is_valid_tuple(remote):
            self.drops["dtls_unvalidated_tuple"] += 1
            return
        if self.dtls is None or not self._dtls_started:
            if len(self._early_dtls) < _EARLY_DTLS_MAX:
                self._early_dtls.append((data, remote))
            else:
                self.drops["dtls_early_overflow"] += 1
            return
        self._dtls_remote = remote
        self.dtls.receive(data, now_ms)
        self._after_dtls()

    def datagrams_to_send(self) -> list[tuple[bytes, Any]]:
        """Drain queued STUN answers and DTLS flights as ``[(datagram, remote)]``."""
        out, self._out = self._out, []
        return out

    def drain_events(self) -> list[tuple[str, Any]]:
        """Drain ``[(event_name, value)]`` produced since the last call."""
        ev, self._events = self._events, []
        return ev

    def next_timer_ms(self) -> int | None:
        """Earliest time (ms) at which :meth:`handle_timer` has work, or ``None``."""
        times = [t for t in (self.ice.next_timer_ms(), self.dtls.next_timer_ms() if self.dtls else None) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now_ms: int) -> None:
        self.ice.handle_timer(now_ms)
        self._pull_ice_events(now_ms)
        if self.dtls is not None and self._dtls_started:
            self.dtls.handle_timer(now_ms)
            self._after_dtls()

    # --- data channels (issue 7) ---------------------------------------------------------------
    def drain_application_data(self) -> list[bytes]:
        """DTLS application data received since the last call (SCTP packets, RFC 8261)."""
        data, self._application_data = self._application_data, []
        return data

    def send_application_data(self, packets: list[bytes]) -> None:
        """Send SCTP packets as DTLS application data records; the datagrams come out of
        :meth:`datagrams_to_send`. Dropped and counted unless DTLS is connected."""
        dtls = self.dtls
        if dtls is None or self._dtls_state != "connected":
            self.drops["sctp_before_dtls"] += len(packets)
            return
        for packet in packets:
            try:
                dtls.send_application_data(packet)
            except (InvalidStateError, ValueError):
                self.drops["sctp_send_failed"] += 1
        self._flush_dtls()
    # --- end data channels ------------------------------------------------------------------------

    def protect_rtp(self, packet: bytes) -> bytes:
        return self.srtp.protect_rtp(packet)  # type: ignore[union-attr]

    def protect_rtcp(self, packet: bytes) -> bytes:
        return self.srtp.protect_rtcp(packet)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ internals
    def _pull_ice_events(self, now_ms: int) -> None:
        for name, value in self.ice.drain_events():
            if name == "state":
                self._events.append(("icestatechange", value))
            elif name == "selected_tuple":
                self._events.append(("iceselectedtuplechange", value))
        self._maybe_start_dtls(now_ms)

    def _maybe_start_dtls(self, now_ms: int) -> None:
        if self._dtls_started or self.dtls is None or self.closed:
            return
        if self.ice.state not in ("connected", "completed"):
            return
        self._dtls_started = True
        self._dtls_remote = self.ice.selected_tuple
        self._set_dtls_state("connecting")
        self.dtls.start(now_ms)
        early, self._early_dtls = self._early_dtls, []
        for data, remote in early:
            if self.ice.is_valid_tuple(remote):
                self._dtls_remote = remote
                self.dtls.receive(data, now_ms)
        self._after_dtls()

    def _flush_dtls(self) -> None:
        if self.dtls is None:
            return
        remote = self.ice.selected_tuple or self._dtls_remote
        for datagram in self.dtls.datagrams_to_send():
            if remote is not None:
                self._out.append((datagram, remote))

    def _after_dtls(self) -> None:
        self._flush_dtls()
        dtls = self.dtls
        assert dtls is not None
        for name, value in dtls.drain_events():
            if name == "state":
                if value == "connected" and self.srtp is None:
                    local_key, remote_key = dtls.srtp_keys()
                    self.srtp = SrtpSession(dtls.srtp_crypto_suite, local_key, remote_key)
                self._set_dtls_state(value)
            # --- data channels (issue 7) ---
            elif name == "application_data":  # SCTP packets (RFC 8261), pulled by the actor
                self._application_data.append(value)
            # --- end data channels ---

    def _set_dtls_state(self, state: str) -> None:
        if state != self._dtls_state:
            self._dtls_state = state
            self._events.append(("dtlsstatechange", state))
