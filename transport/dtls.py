"""DTLS 1.2 in both roles over a pyOpenSSL memory BIO, sans-I/O, with DTLS-SRTP keying.

Shape of use (the actor shell owns the socket and the clock)::

    session = DtlsSession(cert, role="server", remote_fingerprints=dtls_parameters["fingerprints"])
    session.start(now_ms)
    ...  session.receive(datagram, now_ms)      # one UDP datagram of DTLS records
    for d in session.datagrams_to_send(): sock.sendto(d, addr)
    for event in session.drain_events(): ...   # ("state", "connected"), ("application_data", b"")
    timer: session.next_timer_ms() -> session.handle_timer(now_ms)

Facts taken from mediasoup's ``DtlsTransport`` and aiortc's ``RTCDtlsTransport`` (our own code):
ECDSA P-256 self-signed certificate valid from one day ago for ~10 years, fingerprints in
sha-1 .. sha-512 as upper-case colon-separated hex (RFC 8122 §5), MTU 1350, SRTP profiles in the
order AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_CM_128_HMAC_SHA1_80 (RFC 5764 §4.1.2, RFC 7714
§14.2), keys from the exporter label "EXTRACTOR-dtls_srtp" (RFC 5764 §4.2), role "auto" of the
remote side makes us the client (mediasoup: we are ICE-controlled).

Two things the memory BIO changes, handled here:

- The BIO is a byte stream, so the records OpenSSL writes are split again at record boundaries
  and packed into datagrams of at most ``mtu`` bytes (RFC 6347 §4.1.1 allows several records in
  a datagram; OpenSSL fragments handshake messages to the MTU set on the connection).
- OpenSSL's retransmission timer runs on its own wall clock. We keep the timer in the caller's
  ``now_ms`` (initial value taken from ``DTLSv1_get_timeout``, doubling per RFC 6347 §4.2.4.1 up
  to 60 s). When it fires we ask OpenSSL to retransmit (``DTLSv1_handle_timeout``); when OpenSSL
  declines because its own clock says the flight is not yet due (a fake clock in tests, or a
  wall-clock step) we re-send the last flight's datagrams as they were.
"""

from __future__ import annotations

import datetime
import math
import os
import struct
import weakref
from collections import deque
from typing import Any, Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto

from .errors import InvalidStateError

__all__ = [
    "DTLS_ROLE_FOR_REMOTE",
    "DtlsCertificate",
    "DtlsSession",
    "FINGERPRINT_ALGORITHMS",
    "SRTP_CRYPTO_SUITE_PREFERENCE",
]

#: our DTLS role given the remote ``dtlsParameters.role`` (mediasoup WebRtcTransport.connect).
DTLS_ROLE_FOR_REMOTE = {"client": "server", "server": "client", "auto": "client"}

#: signalled fingerprint algorithm (RFC 8122 / mediasoup) -> hash; in the order we list ours.
FINGERPRINT_ALGORITHMS: dict[str, Any] = {
    "sha-1": hashes.SHA1,
    "sha-224": hashes.SHA224,
    "sha-256": hashes.SHA256,
    "sha-384": hashes.SHA384,
    "sha-512": hashes.SHA512,
}
_OPENSSL_DIGEST = {"sha-1": "sha1", "sha-224": "sha224", "sha-256": "sha256",
                   "sha-384": "sha384", "sha-512": "sha512"}

#: mediasoup crypto suite name -> OpenSSL use_srtp profile name (RFC 5764 §4.1.2, RFC 7714).
_OPENSSL_SRTP_PROFILE = {
    "AEAD_AES_256_GCM": b"SRTP_AEAD_AES_256_GCM",
    "AEAD_AES_128_GCM": b"SRTP_AEAD_AES_128_GCM",
    "AES_CM_128_HMAC_SHA1_80": b"SRTP_AES128_CM_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32": b"SRTP_AES128_CM_SHA1_32",
}
_SUITE_FOR_PROFILE = {v: k for k, v in _OPENSSL_SRTP_PROFILE.items()}
#: master key / salt lengths in bytes per suite (RFC 3711 §8.2, RFC 7714 §12).
_SRTP_KEY_SALT = {"AEAD_AES_256_GCM": (32, 12), "AEAD_AES_128_GCM": (16, 12),
                  "AES_CM_128_HMAC_SHA1_80": (16, 14), "AES_CM_128_HMAC_SHA1_32": (16, 14)}
#: offered (server: preferred) order when ``srtp_crypto_suites`` is None.
SRTP_CRYPTO_SUITE_PREFERENCE = ("AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80")

# ECDSA first (our certificate), RSA for a user-supplied RSA certificate; all accepted by
# Chrome/BoringSSL, Firefox/NSS and libwebrtc over DTLS 1.2.
_CIPHER_LIST = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:"
                b"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305:"
                b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:"
                b"ECDHE-RSA-AES256-SHA")
_DTLS1_2_VERSION = 0xFEFD
_EXPORTER_LABEL = b"EXTRACTOR-dtls_srtp"

DEFAULT_MTU = 1350  # mediasoup DtlsTransport
MAX_TIMEOUT_MS = 60_000  # RFC 6347 §4.2.4.1
MAX_RETRANSMISSIONS = 12  # OpenSSL's DTLS1_TMO_ALERT_COUNT
MAX_EARLY_DATAGRAMS = 8  # datagrams kept while "new" (e.g. a ClientHello before connect)

# DTLS record header (RFC 6347 §4.1): type(1) version(2) epoch(2) sequence_number(6) length(2).
_RECORD_HEADER = struct.Struct("!BBxH6xH")
# Handshake header (RFC 6347 §4.2.2): msg_type(1) length(3) message_seq(2) fragment_offset(3)
# fragment_length(3); each 24-bit field read as the low 24 bits of the 32-bit word ending on it.
_U32 = struct.Struct("!I")
_RECORD_HEADER_BYTES = 13

_STATS_KEYS = ("datagrams_received", "datagrams_dropped", "records_received", "records_dropped",
               "datagrams_sent", "retransmissions", "handshake_failures",
               "application_data_received", "application_data_sent")


# ---------------------------------------------------------------------------------- certificate


class DtlsCertificate:
    """A certificate and private key that any number of :class:`DtlsSession` s share.

    Build with :meth:`generate` (ECDSA P-256, self-signed, as mediasoup and browsers do) or
    :meth:`from_pem` (mediasoup's ``dtlsCertificateFile`` / ``dtlsPrivateKeyFile``). The
    fingerprints and one OpenSSL context per SRTP profile list are computed once and cached, so
    a new session costs only an ``SSL`` object. Pickles as its PEM pair.
    """

    __slots__ = ("_cert", "_key", "_fingerprints", "_contexts", "__weakref__")

    def __init__(self, cert: x509.Certificate, key: Any) -> None:
        if not isinstance(cert, x509.Certificate):
            raise TypeError("cert: must be a cryptography x509.Certificate")
        pub = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        try:
            matches = key.public_key().public_bytes(*pub) == cert.public_key().public_bytes(*pub)
        except AttributeError:
            raise TypeError("key: must be a cryptography private key") from None
        if not matches:
            raise ValueError("key: does not match the certificate's public key")
        self._cert = cert
        self._key = key
        self._fingerprints = [
            {"algorithm": name, "value": _colon_hex(cert.fingerprint(algo()))}
            for name, algo in FINGERPRINT_ALGORITHMS.items()
        ]
        self._contexts: dict[tuple[str, ...], SSL.Context] = {}

    @classmethod
    def generate(cls, *, now: datetime.datetime | None = None) -> "DtlsCertificate":
        """New ECDSA P-256 key and self-signed SHA-256 certificate with a random CN.

        Valid from ``now`` - 1 day to ``now`` + 3650 days (mediasoup). ``now`` (timezone-aware UTC)
        defaults to the current date: the one wall-clock read in this module, used only for the
        certificate's validity period.
        """
        if now is None:
            now = datetime.datetime.now(datetime.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, os.urandom(16).hex())])
        cert = (x509.CertificateBuilder()
                .subject_name(name).issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> "DtlsCertificate":
        """Load a PEM certificate and its unencrypted PEM private key.

        Raises ValueError naming the field when either does not parse or they do not match.
        """
        try:
            cert = x509.load_pem_x509_certificate(_as_bytes("cert_pem", cert_pem))
        except ValueError as exc:
            raise ValueError(f"cert_pem: not a PEM certificate ({exc})") from None
        try:
            key = serialization.load_pem_private_key(_as_bytes("key_pem", key_pem), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"key_pem: not an unencrypted PEM private key ({exc})") from None
        return cls(cert, key)

    @property
    def fingerprints(self) -> list[dict[str, str]]:
        """mediasoup ``DtlsParameters.fingerprints``: ``[{"algorithm": "sha-1", "value": "AB:.."}]``.

        One entry per algorithm sha-1, sha-224, sha-256, sha-384, sha-512; values are upper-case
        hex bytes joined by colons. A fresh list of fresh dicts each call.
        """
        return [dict(fp) for fp in self._fingerprints]

    @property
    def cert_pem(self) -> bytes:
        """The certificate in PEM."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key in unencrypted PKCS#8 PEM."""
        return self._key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    @property
    def not_valid_after(self) -> datetime.datetime:
        """End of the validity period (UTC)."""
        return self._cert.not_valid_after_utc

    def __reduce__(self) -> tuple[Any, tuple[bytes, bytes]]:
        return (DtlsCertificate.from_pem, (self.cert_pem, self.key_pem))

    def _context(self, suites: tuple[str, ...]) -> SSL.Context:
        ctx = self._contexts.get(suites)
        if ctx is None:
            ctx = SSL.Context(SSL.DTLS_METHOD)
            ctx.set_min_proto_version(_DTLS1_2_VERSION)
            options = SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU
            options |= getattr(SSL, "OP_NO_RENEGOTIATION", 0)
            ctx.set_options(options)
            # Accept any certificate chain; the leaf is checked against the signalled
            # fingerprints in _verify_callback (and again once the handshake is done).
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify_callback)
            ctx.use_certificate(self._cert)
            ctx.use_privatekey(self._key)
            ctx.check_privatekey()
            ctx.set_cipher_list(_CIPHER_LIST)
            ctx.set_tlsext_use_srtp(b":".join(_OPENSSL_SRTP_PROFILE[s] for s in suites))
            self._contexts[suites] = ctx
        return ctx


def _verify_callback(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int,
                     ok: int) -> bool:
    # Called by OpenSSL for each certificate of the peer's chain; only the leaf (depth 0),
    # the one that signed the handshake, must match a signalled fingerprint.
    if depth != 0:
        return True
    ref = conn.get_app_data()
    session = ref() if ref is not None else None
    return session is not None and session._check_fingerprint(cert)


# ---------------------------------------------------------------------------------- session


class DtlsSession:
    """One DTLS 1.2 association (RFC 6347) with DTLS-SRTP keying (RFC 5764), sans-I/O.

    Arguments:
      certificate: our :class:`DtlsCertificate` (shared by all sessions of a worker).
      role: "client" (sends the ClientHello) or "server"; see :data:`DTLS_ROLE_FOR_REMOTE`.
      remote_fingerprints: the peer's mediasoup ``dtlsParameters.fingerprints``,
        ``[{"algorithm": "sha-256", "value": "AB:.."}]``; algorithms we do not know are ignored,
        at least one must be sha-1/224/256/384/512.
      srtp_crypto_suites: mediasoup names, in preference order, that we offer (client) or
        accept (server); default :data:`SRTP_CRYPTO_SUITE_PREFERENCE`.
      mtu: largest datagram we send, bytes (default 1350 as mediasoup).

    ``state`` is mediasoup's ``dtlsState``: "new" -> "connecting" (:meth:`start`) -> "connected"
    | "failed" | "closed". Events, pulled with :meth:`next_event` / :meth:`drain_events`, are
    tuples ``("state", new_state)`` and ``("application_data", bytes)``.

    The remote certificate is accepted when its fingerprint matches at least one signalled
    fingerprint of a supported algorithm (compared case-insensitively); otherwise the handshake
    is aborted, ``state`` becomes "failed" and ``failure_reason`` says why.

    ``stats`` counters: datagrams_received, datagrams_dropped (not a DTLS datagram, or arriving
    when failed/closed), records_received, records_dropped (bad framing, unknown content type,
    or unencrypted records that are invalid, RFC 6347 §4.1.2.7), datagrams_sent,
    retransmissions, handshake_failures, application_data_received, application_data_sent.

    Raises TypeError / ValueError (message names the field) for bad arguments.
    """

    def __init__(self, certificate: DtlsCertificate, *, role: str,
                 remote_fingerprints: Iterable[dict[str, str]],
                 srtp_crypto_suites: list[str] | None = None, mtu: int = DEFAULT_MTU) -> None:
        if not isinstance(certificate, DtlsCertificate):
            raise TypeError("certificate: must be a DtlsCertificate")
        if role not in ("client", "server"):
            raise ValueError(f"role: must be 'client' or 'server', got {role!r}")
        if not isinstance(mtu, int) or isinstance(mtu, bool) or not 256 <= mtu <= 65_507:
            raise ValueError("mtu: must be an int in [256, 65507]")
        self._remote_fingerprints = _normalize_fingerprints(remote_fingerprints)
        suites = _normalize_suites(srtp_crypto_suites)

        self.role = role
        self.mtu = mtu
        self.state = "new"
        self.failure_reason: str | None = None
        self.stats: dict[str, int] = dict.fromkeys(_STATS_KEYS, 0)
        self._certificate = certificate
        self._events: deque[tuple[str, Any]] = deque()
        self._out: list[bytes] = []
        self._early: list[bytes] = []
        self._last_flight: list[bytes] = []
        self._timer_ms: int | None = None
        self._timeout_ms = 1000
        self._timeouts = 0
        self._verify_failure: str | None = None
        self._remote_certificate_pem: str | None = None
        self._srtp_crypto_suite: str | None = None
        self._srtp_keys: tuple[bytes, bytes] | None = None

        conn = SSL.Connection(certificate._context(suites), None)
        conn.set_app_data(weakref.ref(self))
        conn.set_ciphertext_mtu(mtu)
        if role == "client":
            conn.set_connect_state()
        else:
            conn.set_accept_state()
        self._conn = conn

    # ------------------------------------------------------------------------- properties

    @property
    def local_fingerprints(self) -> list[dict[str, str]]:
        """Our certificate's fingerprints (see :attr:`DtlsCertificate.fingerprints`)."""
        return self._certificate.fingerprints

    @property
    def remote_certificate_pem(self) -> str | None:
        """The peer's certificate in PEM once connected, else None."""
        return self._remote_certificate_pem

    @property
    def srtp_crypto_suite(self) -> str | None:
        """Negotiated mediasoup crypto suite name once connected (e.g. "AEAD_AES_256_GCM")."""
        return self._srtp_crypto_suite

    def srtp_keys(self) -> tuple[bytes, bytes]:
        """``(local master key + salt, remote master key + salt)`` for :class:`SrtpSession`.

        RFC 5764 §4.2: the exporter output is client key | server key | client salt | server salt;
        "local" is the client's half when we are the client. Raises InvalidStateError before the
        handshake completed.
        """
        if self._srtp_keys is None:
            raise InvalidStateError("DTLS not connected: no SRTP keys")
        return self._srtp_keys

    # ------------------------------------------------------------------------- events / output

    def next_event(self) -> tuple[str, Any] | None:
        """The oldest pending event, or None."""
        return self._events.popleft() if self._events else None

    def drain_events(self) -> list[tuple[str, Any]]:
        """All pending events, oldest first."""
        events = list(self._events)
        self._events.clear()
        return events

    def datagrams_to_send(self) -> list[bytes]:
        """Outgoing datagrams (each at most ``mtu`` bytes unless one record is larger)."""
        out = self._out
        self._out = []
        return out

    def next_timer_ms(self) -> int | None:
        """When :meth:`handle_timer` must be called next (same clock as ``now_ms``), or None."""
        return self._timer_ms

    # ------------------------------------------------------------------------- input

    def start(self, now_ms: int) -> None:
        """Begin the handshake: "new" -> "connecting"; a client queues its ClientHello.

        Datagrams received while "new" are then processed. Raises InvalidStateError unless "new".
        """
        if self.state != "new":
            raise InvalidStateError(f"DTLS start() in state {self.state!r}")
        self._set_state("connecting")
        self._process(now_ms)
        early, self._early = self._early, []
        for data in early:  # already counted by receive()
            if self.state != "connecting":
                break
            self._conn.bio_write(data)
            self._process(now_ms)

    def receive(self, data: bytes, now_ms: int) -> None:
        """Feed one UDP datagram of DTLS records. Never raises for bad input: garbage is counted
        in ``stats``; a fatal error during the handshake moves ``state`` to "failed"."""
        stats = self.stats
        stats["datagrams_received"] += 1
        state = self.state
        if state == "closed" or state == "failed":
            stats["datagrams_dropped"] += 1
            return
        data, kept, dropped = _filter_records(data)
        stats["records_received"] += kept
        stats["records_dropped"] += dropped
        if not kept:
            stats["datagrams_dropped"] += 1
            return
        if state == "new":
            if len(self._early) < MAX_EARLY_DATAGRAMS:
                self._early.append(bytes(data))
            else:
                stats["datagrams_dropped"] += 1
            return
        self._conn.bio_write(bytes(data))
        self._process(now_ms)

    def handle_timer(self, now_ms: int) -> None:
        """Retransmit the last flight when the timer is due (RFC 6347 §4.2.4); no-op otherwise.

        After :data:`MAX_RETRANSMISSIONS` unanswered retransmissions the state becomes "failed".
        """
        if self._timer_ms is None or now_ms < self._timer_ms:
            return
        if self.state != "connecting":
            self._timer_ms = None
            return
        self._timeouts += 1
        if self._timeouts > MAX_RETRANSMISSIONS:
            self._fail("handshake timeout")
            return
        try:
            fired = self._conn.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self._fail(f"handshake timeout ({_ssl_error_text(exc)})")
            self._flush_output(flight=False)
            return
        self._timeout_ms = min(self._timeout_ms * 2, MAX_TIMEOUT_MS)
        self.stats["retransmissions"] += 1
        if fired and self._flush_output(flight=True):
            remaining = self._conn.DTLSv1_get_timeout()
            delay = _ceil_ms(remaining) if remaining is not None else self._timeout_ms
        else:
            # OpenSSL's wall clock says the flight is not due yet: re-send it as it was.
            self._out.extend(self._last_flight)
            self.stats["datagrams_sent"] += len(self._last_flight)
            delay = self._timeout_ms
        self._timer_ms = now_ms + delay

    def send_application_data(self, data: bytes) -> None:
        """Send ``data`` as one DTLS application_data record (SCTP packets, RFC 8261).

        Keep ``data`` below ``mtu`` minus ~40 bytes of record overhead to fit one datagram.
        Raises InvalidStateError unless "connected", ValueError if longer than 16384 bytes.
        """
        if self.state != "connected":
            raise InvalidStateError(f"DTLS send in state {self.state!r}")
        if len(data) > 16384:
            raise ValueError("data: longer than a DTLS record (16384 bytes)")
        try:
            self._conn.send(bytes(data))
        except SSL.Error as exc:
            self._fail(f"send failed ({_ssl_error_text(exc)})")
        else:
            self.stats["application_data_sent"] += 1
        self._flush_output(flight=False)

    def close(self) -> None:
        """Send close_notify (when a handshake was started) and move to "closed". Idempotent."""
        if self.state in ("closed", "failed"):
            return
        if self.state != "new":
            try:
                self._conn.shutdown()
            except SSL.Error:
                pass
            self._flush_output(flight=False)
        self._timer_ms = None
        self._last_flight = []
        self._set_state("closed")

    # ------------------------------------------------------------------------- internals

    def _process(self, now_ms: int) -> None:
        """Advance OpenSSL after start or after input, then collect output and re-arm the timer."""
        if self.state == "connecting":
            self._handshake_step()
        if self.state == "connected":
            self._read_application_data()
        in_handshake = self.state == "connecting"
        new_flight = self._flush_output(flight=in_handshake) and in_handshake
        if self.state != "connecting":
            self._timer_ms = None
            return
        remaining = self._conn.DTLSv1_get_timeout()
        if remaining is None:
            self._timer_ms = None
        elif new_flight or self._timer_ms is None:
            self._timeout_ms = max(_ceil_ms(remaining), 1)
            self._timeouts = 0
            self._timer_ms = now_ms + self._timeout_ms

    def _handshake_step(self) -> None:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return
        except SSL.ZeroReturnError:
            self._set_state("closed")
            return
        except SSL.Error as exc:
            self._fail(self._verify_failure or f"handshake failed ({_ssl_error_text(exc)})",
                       handshake=True)
            return
        self._on_handshake_done()

    def _on_handshake_done(self) -> None:
        conn = self._conn
        cert = conn.get_peer_certificate()
        if cert is None:
            self._fail("no remote certificate", handshake=True, notify=True)
            return
        if not self._check_fingerprint(cert):
            self._fail(self._verify_failure or "remote fingerprint mismatch", handshake=True,
                       notify=True)
            return
        self._remote_certificate_pem = cert.to_cryptography().public_bytes(
            serialization.Encoding.PEM).decode("ascii")
        profile = conn.get_selected_srtp_profile()
        suite = _SUITE_FOR_PROFILE.get(profile)
        if suite is None:
            self._fail("no SRTP profile negotiated (use_srtp, RFC 5764 §4.1.2)", handshake=True,
                       notify=True)
            return
        key_len, salt_len = _SRTP_KEY_SALT[suite]
        material = conn.export_keying_material(_EXPORTER_LABEL, 2 * (key_len + salt_len))
        client_key = material[:key_len]
        server_key = material[key_len:2 * key_len]
        salts = material[2 * key_len:]
        client = client_key + salts[:salt_len]
        server = server_key + salts[salt_len:]
        self._srtp_crypto_suite = suite
        self._srtp_keys = (client, server) if self.role == "client" else (server, client)
        self._last_flight = []
        self._set_state("connected")

    def _read_application_data(self) -> None:
        conn = self._conn
        while True:
            try:
                data = conn.recv(65536)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:  # close_notify
                self._timer_ms = None
                self._set_state("closed")
                return
            except SSL.Error as exc:
                self._fail(f"DTLS error ({_ssl_error_text(exc)})")
                return
            if not data:
                return
            self.stats["application_data_received"] += 1
            self._events.append(("application_data", data))

    def _flush_output(self, *, flight: bool) -> bool:
        """Move OpenSSL's output into datagrams; remember them as the last flight if ``flight``."""
        chunks = []
        conn = self._conn
        while True:
            try:
                chunks.append(conn.bio_read(65536))
            except SSL.WantReadError:
                break
        if not chunks:
            return False
        datagrams = _pack_records(b"".join(chunks), self.mtu)
        self._out.extend(datagrams)
        self.stats["datagrams_sent"] += len(datagrams)
        if flight:
            self._last_flight = datagrams
        return bool(datagrams)

    def _check_fingerprint(self, cert: crypto.X509) -> bool:
        digests: dict[str, str] = {}
        for algorithm, value in self._remote_fingerprints:
            digest = digests.get(algorithm)
            if digest is None:
                digest = digests[algorithm] = cert.digest(_OPENSSL_DIGEST[algorithm]).decode()
            if digest == value:
                return True
        signalled = ", ".join(sorted({a for a, _ in self._remote_fingerprints}))
        self._verify_failure = (f"remote certificate fingerprint matches none of the signalled "
                                f"fingerprints ({signalled})")
        return False

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._events.append(("state", state))

    def _fail(self, reason: str, *, handshake: bool = False, notify: bool = False) -> None:
        if self.state in ("closed", "failed"):
            return
        if handshake or self.state == "connecting":
            self.stats["handshake_failures"] += 1
        if notify:
            try:
                self._conn.shutdown()
            except SSL.Error:
                pass
        self.failure_reason = reason
        self._timer_ms = None
        self._last_flight = []
        self._set_state("failed")


# ---------------------------------------------------------------------------------- helpers


def _filter_records(data: bytes) -> tuple[bytes, int, int]:
    """Walk the DTLS records of one datagram: ``(bytes to give OpenSSL, records kept, dropped)``.

    RFC 6347 §4.1.2.7: invalid records are discarded silently so the association survives.
    OpenSSL aborts the handshake on some of them (an application_data or unknown record, a
    malformed handshake fragment in epoch 0), so those are removed here: a truncated or
    non-DTLS tail (RFC 7983 §7 content types 20..63, version major byte 0xFE), content types
    other than change_cipher_spec / alert / handshake / application_data, application_data in
    epoch 0, and epoch-0 plaintext whose framing is wrong.
    """
    pos = 0
    kept = dropped = 0
    end = len(data)
    pieces: list[tuple[int, int]] | None = None
    unpack = _RECORD_HEADER.unpack_from
    while pos < end:
        if end - pos < _RECORD_HEADER_BYTES:
            dropped += 1
            break
        content_type, major, epoch, length = unpack(data, pos)
        nxt = pos + _RECORD_HEADER_BYTES + length
        if not 20 <= content_type <= 63 or major != 0xFE or nxt > end:
            dropped += 1
            break
        if epoch:
            ok = 20 <= content_type <= 23
        elif content_type == 22:
            ok = _handshake_fragments_ok(data, pos + _RECORD_HEADER_BYTES, nxt)
        elif content_type == 21:
            ok = length == 2
        elif content_type == 20:
            ok = length == 1 and data[nxt - 1] == 1
        else:
            ok = False
        if ok:
            kept += 1
            if pieces is not None:
                pieces.append((pos, nxt))
        else:
            dropped += 1
            if pieces is None:
                pieces = [(0, pos)] if pos else []
        pos = nxt
    if pieces is None:
        return (data if pos == end else data[:pos]), kept, dropped
    return b"".join(data[a:b] for a, b in pieces), kept, dropped


def _handshake_fragments_ok(data: bytes, pos: int, end: int) -> bool:
    """Epoch-0 handshake record: fragments (RFC 6347 §4.2.2, 12-byte header) tile it exactly."""
    while pos < end:
        if end - pos < 12:
            return False
        msg_len = _U32.unpack_from(data, pos)[0] & 0xFFFFFF
        frag_off = _U32.unpack_from(data, pos + 5)[0] & 0xFFFFFF
        frag_len = _U32.unpack_from(data, pos + 8)[0] & 0xFFFFFF
        if frag_off + frag_len > msg_len:
            return False
        pos += 12 + frag_len
    return pos == end


def _pack_records(stream: bytes, mtu: int) -> list[bytes]:
    """Split OpenSSL's record stream at record boundaries and pack records into datagrams."""
    datagrams: list[bytes] = []
    start = pos = 0
    end = len(stream)
    unpack = _RECORD_HEADER.unpack_from
    while end - pos >= _RECORD_HEADER_BYTES:
        rec_end = pos + _RECORD_HEADER_BYTES + unpack(stream, pos)[3]
        if rec_end - start > mtu and pos > start:
            datagrams.append(stream[start:pos])
            start = pos
        pos = rec_end
    if end > start:
        datagrams.append(stream[start:end])
    return datagrams


def _normalize_fingerprints(fingerprints: Iterable[dict[str, str]]) -> list[tuple[str, str]]:
    if isinstance(fingerprints, (str, bytes, dict)) or not isinstance(fingerprints, Iterable):
        raise TypeError("remote_fingerprints: must be a list of {algorithm, value} dicts")
    result = []
    for i, fp in enumerate(fingerprints):
        if (not isinstance(fp, dict) or not isinstance(fp.get("algorithm"), str)
                or not isinstance(fp.get("value"), str)):
            raise TypeError(f"remote_fingerprints[{i}]: must be a dict with str 'algorithm' "
                            f"and 'value'")
        algorithm = fp["algorithm"].strip().lower()
        if algorithm in _OPENSSL_DIGEST:
            result.append((algorithm, fp["value"].strip().upper()))
    if not result:
        raise ValueError("remote_fingerprints: no fingerprint with a supported algorithm "
                         f"({', '.join(_OPENSSL_DIGEST)})")
    return result


def _normalize_suites(suites: list[str] | None) -> tuple[str, ...]:
    if suites is None:
        return SRTP_CRYPTO_SUITE_PREFERENCE
    if isinstance(suites, str) or not isinstance(suites, Iterable):
        raise TypeError("srtp_crypto_suites: must be a list of crypto suite names")
    result: list[str] = []
    for suite in suites:
        if suite not in _OPENSSL_SRTP_PROFILE:
            raise ValueError(f"srtp_crypto_suites: unsupported {suite!r}, expected some of "
                             f"{list(_OPENSSL_SRTP_PROFILE)}")
        if suite not in result:
            result.append(suite)
    if not result:
        raise ValueError("srtp_crypto_suites: must not be empty")
    return tuple(result)


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def _ceil_ms(seconds: float) -> int:
    return int(math.ceil(seconds * 1000))


def _as_bytes(field: str, value: bytes | str) -> bytes:
    if isinstance(value, str):
        return value.encode("ascii")
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{field}: must be bytes")
    return bytes(value)


def _ssl_error_text(exc: BaseException) -> str:
    """Compact text of a pyOpenSSL error: its OpenSSL reason strings joined by '; '."""
    try:
        parts = [str(item[2]) for item in exc.args[0] if item and item[-1]]
    except (IndexError, TypeError):
        parts = []
    return "; ".join(parts) or (type(exc).__name__ + (f" {exc.args}" if exc.args else ""))
