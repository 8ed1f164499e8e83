"""A minimal WebRTC client peer on a real UDP socket: ICE (controlling), DTLS client, SRTP.

Not a browser: it sends and receives pre-built RTP/RTCP through a raysfu WebRtcTransport, for
integration tests and the load generator. It uses the same sans-I/O pieces as the server
(``transport.stun``, ``transport.dtls``, ``transport.srtp``) in the client role.

```python
peer = ClientPeer()
await peer.open()
await transport.connect(dtls_parameters=peer.dtls_parameters)
await peer.connect(transport.ice_parameters, transport.ice_candidates, transport.dtls_parameters)
peer.send_rtp(packet)                       # plaintext RTP, protected here
packets = peer.received_rtp                 # decrypted RTP received, in arrival order
```
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from raysfu.transport.demux import is_rtcp
from raysfu.transport.dtls import DtlsCertificate, DtlsSession
from raysfu.transport.errors import PacketParseError
from raysfu.transport.srtp import SrtpSession
from raysfu.transport.stun import build_binding_request

_CERT: DtlsCertificate | None = None


def _certificate() -> DtlsCertificate:
    global _CERT
    if _CERT is None:
        _CERT = DtlsCertificate.generate()
    return _CERT


class ClientPeer(asyncio.DatagramProtocol):
    """One client transport. ``received_rtp``/``received_rtcp`` hold decrypted packets unless
    ``on_rtp``/``on_rtcp`` callbacks are set; ``keep`` False keeps only counters."""

    def __init__(self, *, ip: str = "127.0.0.1", keep: bool = True, srtp_crypto_suites: list[str] | None = None) -> None:
        self.ip = ip
        self.keep = keep
        self.certificate = _certificate()
        self.udp: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.dtls: DtlsSession | None = None
        self.srtp: SrtpSession | None = None
        self.received_rtp: list[bytes] = []
        self.received_rtcp: list[bytes] = []
        self.rtp_count = 0
        self.errors = 0
        self.on_rtp: Callable[[bytes], None] | None = None
        self.on_rtcp: Callable[[bytes], None] | None = None
        self._ice_ok = asyncio.Event()
        self._dtls_done = asyncio.Event()
        self._srtp_suites = srtp_crypto_suites
        self._timer: asyncio.TimerHandle | None = None

    @property
    def dtls_parameters(self) -> dict:
        """Our ``DtlsParameters`` (role client, as mediasoup-client)."""
        return {"role": "client", "fingerprints": self.certificate.fingerprints}

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.ip, 0))

    def connection_made(self, transport) -> None:
        self.udp = transport

    @staticmethod
    def _now_ms() -> int:
        return int(time.monotonic() * 1000)

    async def connect(self, ice_parameters: dict, ice_candidates: list[dict], dtls_parameters: dict, timeout_s: float = 10.0) -> None:
        """Run ICE (binding requests with USE-CANDIDATE until answered) then the DTLS handshake."""
        cand = next(c for c in ice_candidates if c["protocol"] == "udp")
        self.remote = (cand.get("address") or cand["ip"], cand["port"])
        username = f"{ice_parameters['usernameFragment']}:client"
        deadline = time.monotonic() + timeout_s
        while not self._ice_ok.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError("ICE: no binding response")
            request = build_binding_request(username, ice_parameters["password"], priority=0x7E7FFFFF, use_candidate=True)
            self.udp.sendto(request, self.remote)
            try:
                await asyncio.wait_for(self._ice_ok.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        self.dtls = DtlsSession(
            self.certificate,
            role="client",
            remote_fingerprints=dtls_parameters["fingerprints"],
            srtp_crypto_suites=self._srtp_suites,
        )
        self.dtls.start(self._now_ms())
        self._pump_dtls()
        try:
            await asyncio.wait_for(self._dtls_done.wait(), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise TimeoutError(f"DTLS: handshake did not finish (state {self.dtls.state})") from None
        if self.srtp is None:
            raise ConnectionError(f"DTLS failed: {self.dtls.state}")

    def _pump_dtls(self) -> None:
        dtls = self.dtls
        if dtls is None:
            return
        for datagram in dtls.datagrams_to_send():
            self.udp.sendto(datagram, self.remote)
        for name, value in dtls.drain_events():
            if name == "state":
                if value == "connected":
                    local, remote = dtls.srtp_keys()
                    self.srtp = SrtpSession(dtls.srtp_crypto_suite, local, remote)
                    self._dtls_done.set()
                elif value in ("failed", "closed"):
                    self._dtls_done.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        t = dtls.next_timer_ms()
        if t is not None and not self._dtls_done.is_set():
            delay = max(0.0, (t - self._now_ms()) / 1000)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.dtls is not None:
            self.dtls.handle_timer(self._now_ms())
            self._pump_dtls()

    def datagram_received(self, data: bytes, addr) -> None:
        if not data:
            return
        b0 = data[0]
        if b0 < 4:
            self._ice_ok.set()  # a binding response (success is all a lite server sends to a good request)
        elif 19 < b0 < 64:
            if self.dtls is not None:
                self.dtls.receive(data, self._now_ms())
                self._pump_dtls()
        elif 127 < b0 < 192 and self.srtp is not None:
            try:
                if is_rtcp(data):
                    plain = self.srtp.unprotect_rtcp(data)
                    if self.on_rtcp is not None:
                        self.on_rtcp(plain)
                    elif self.keep:
                        self.received_rtcp.append(plain)
                else:
                    plain = self.srtp.unprotect_rtp(data)
                    self.rtp_count += 1
                    if self.on_rtp is not None:
                        self.on_rtp(plain)
                    elif self.keep:
                        self.received_rtp.append(plain)
            except PacketParseError:
                self.errors += 1

    def send_rtp(self, packet: bytes) -> None:
        self.udp.sendto(self.srtp.protect_rtp(packet), self.remote)

    def send_rtcp(self, packet: bytes) -> None:
        self.udp.sendto(self.srtp.protect_rtcp(packet), self.remote)

    def send_raw(self, data: bytes) -> None:
        """Send a datagram as is (bad-input tests)."""
        self.udp.sendto(data, self.remote)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.udp is not None:
            self.udp.close()
