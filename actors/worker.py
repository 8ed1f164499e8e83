"""The WorkerActor: one Ray async actor per CPU core hosting routers and their transports.

``WorkerCore`` holds the media graph and answers control requests; ``WorkerActor`` is the Ray
shell around it (one ``request(method, target_id, data)`` entry point, like mediasoup's channel,
plus ``poll_events`` for the driver-side handles). Sockets, timers and the RTP path run on the
actor's own event loop (Ray runs async actors on uvloop when it is installed); media never
travels through Ray calls.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
import uuid
from typing import Any

from raysfu.transport.dtls import DtlsCertificate
from raysfu.transport.errors import InvalidStateError, UnsupportedError

from .router import Router
from .data_channels import set_data_producer_paused  # data channels (issue 7)

TICK_MS = 20
#: how long a request waits for an earlier one of its channel before starting anyway (s)
REQUEST_ORDER_WAIT_S = 5.0
_LOG_LEVELS = ("debug", "warn", "error", "none")


def validate_worker_settings(settings: dict) -> dict:
    """Check mediasoup ``WorkerSettings`` (snake_case or camelCase keys).

    Known: ``log_level`` ("debug"|"warn"|"error"|"none"), ``log_tags`` (list of str),
    ``rtc_min_port``/``rtc_max_port`` (ints, min <= max), ``dtls_certificate_file`` and
    ``dtls_private_key_file`` (PEM paths, both or neither), ``app_data``. Raises ``TypeError``
    naming the field; ``UnsupportedError`` for ``libwebrtc_field_trials`` and ``disable_liburing``
    values we cannot honour.
    """
    out: dict[str, Any] = {}
    aliases = {
        "logLevel": "log_level",
        "logTags": "log_tags",
        "rtcMinPort": "rtc_min_port",
        "rtcMaxPort": "rtc_max_port",
        "dtlsCertificateFile": "dtls_certificate_file",
        "dtlsPrivateKeyFile": "dtls_private_key_file",
        "appData": "app_data",
        "libwebrtcFieldTrials": "libwebrtc_field_trials",
        "disableLiburing": "disable_liburing",
    }
    for key, value in settings.items():
        out[aliases.get(key, key)] = value
    known = {"log_level", "log_tags", "rtc_min_port", "rtc_max_port", "dtls_certificate_file", "dtls_private_key_file", "app_data", "libwebrtc_field_trials", "disable_liburing"}
    for key in out:
        if key not in known:
            raise TypeError(f"unknown worker setting {key!r}")
    level = out.get("log_level", "error")
    if level not in _LOG_LEVELS:
        raise TypeError("log_level must be one of 'debug', 'warn', 'error', 'none'")
    tags = out.get("log_tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise TypeError("log_tags must be a list of strings")
    lo, hi = out.get("rtc_min_port", 10000), out.get("rtc_max_port", 59999)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536 for v in (lo, hi)) or lo > hi:
        raise TypeError("rtc_min_port/rtc_max_port must be ints in 1..65535 with min <= max")
    cert, key = out.get("dtls_certificate_file"), out.get("dtls_private_key_file")
    if (cert is None) != (key is None):
        raise TypeError("dtls_certificate_file and dtls_private_key_file go together")
    if out.get("libwebrtc_field_trials") not in (None, "WebRTC-Bwe-AlrLimitedBackoff/Enabled/"):
        raise UnsupportedError("libwebrtc_field_trials: raysfu has no libwebrtc")
    out.setdefault("log_level", level)
    out.setdefault("log_tags", tags)
    out["rtc_min_port"], out["rtc_max_port"] = lo, hi
    return out


class WorkerCore:
    """The media graph of one worker, independent of Ray (tests can drive it directly)."""

    def __init__(self, settings: dict) -> None:
        self.settings = validate_worker_settings(settings or {})
        cert_file = self.settings.get("dtls_certificate_file")
        if cert_file:
            with open(cert_file, "rb") as f_cert, open(self.settings["dtls_private_key_file"], "rb") as f_key:
                self.certificate = DtlsCertificate.from_pem(f_cert.read(), f_key.read())
        else:
            self.certificate = DtlsCertificate.generate()
        self.routers: dict[str, Router] = {}
        self.objects: dict[str, Any] = {}
        self._started_s = time.monotonic()
        self.retired_packets_in = 0  # RTP counts of closed transports, for get_load()
        self.retired_packets_out = 0
        self.closed = False
        self._subscribers: dict[str, list] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._tick_task: asyncio.Task | None = None
        self.timer_errors = 0
        self._load_mark: tuple[float, float, int, int] | None = None
        self._load_rates: dict | None = None
        self.webrtc_servers: dict[str, Any] = {}  # webrtc server (issue 7): id → WebRtcServer
        # request order per channel (see request): next seq to start, waiting later ones
        self._next_seq: dict[str | None, int] = {}
        self._seq_waiters: dict[tuple, asyncio.Future] = {}
        self.request_order_timeouts = 0

    # ------------------------------------------------------------------ clock and events
    @staticmethod
    def now_ms() -> int:
        return int(time.monotonic() * 1000)

    def emit(self, target_id: str, event: str, data: Any) -> None:
        """Queue a notification ``(target_id, event, data)`` for every subscribed driver."""
        item = (target_id, event, data)
        for sub_id, queue in self._subscribers.items():
            queue.append(item)
            if len(queue) > 100_000:  # a driver that stopped polling must not eat the memory
                del queue[: len(queue) - 100_000]
            self._wakeups[sub_id].set()

    def subscribe(self, sub_id: str) -> None:
        self._subscribers.setdefault(sub_id, [])
        self._wakeups.setdefault(sub_id, asyncio.Event())

    def unsubscribe(self, sub_id: str) -> None:
        self._subscribers.pop(sub_id, None)
        ev = self._wakeups.pop(sub_id, None)
        if ev is not None:
            ev.set()

    async def poll_events(self, sub_id: str, timeout_s: float) -> list | None:
        """Wait up to ``timeout_s`` for notifications; ``None`` when unsubscribed."""
        if sub_id not in self._subscribers:
            self.subscribe(sub_id)
        ev = self._wakeups[sub_id]
        if not self._subscribers[sub_id]:
            try:
                await asyncio.wait_for(ev.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
        queue = self._subscribers.get(sub_id)
        if queue is None:
            return None
        ev.clear()
        items = list(queue)
        queue.clear()
        return items

    # ------------------------------------------------------------------ timers
    def start(self) -> None:
        if self._tick_task is None:
            self._tick_task = asyncio.get_running_loop().create_task(self._tick_loop())

    async def _tick_loop(self) -> None:
        # Every TICK_MS, run the timers of the transports whose next deadline has come
        # (``timer_due_ms``, kept by each transport): an idle transport costs one comparison.
        while not self.closed:
            await asyncio.sleep(TICK_MS / 1000)
            now_ms = self.now_ms()
            for router in list(self.routers.values()):
                for transport in list(router.transports.values()):
                    if transport.timer_due_ms > now_ms:
                        continue
                    try:
                        transport.on_timer(now_ms)
                    except Exception:
                        self.timer_errors += 1
                        transport.drops["timer_error"] += 1
                        transport.timer_due_ms = now_ms + 1000  # do not spin on a failing timer
                # --- rtp observers (issue 7) ---
                if router.rtp_observers:
                    try:
                        router.run_rtp_observer_timers(now_ms)
                    except Exception:
                        self.timer_errors += 1
                # --- end rtp observers ---

    # ------------------------------------------------------------------ requests
    async def request(self, method: str, target_id: str | None, data: dict,
                      channel_id: str | None = None, seq: int | None = None) -> Any:
        """Dispatch one control request (mediasoup channel request names). With ``channel_id``
        and ``seq`` (what a process's handles send), the requests of one channel start in
        ``seq`` order, as over mediasoup's channel pipe: Ray may run an async actor's tasks out
        of submission order (its documented behaviour), which would reorder fire-and-forget
        sends (``producer.send``, ``dataProducer.send``) and what follows them."""
        if seq is not None:
            await self._in_order(channel_id, seq)
        if self.closed:
            raise InvalidStateError("worker closed")
        data = data or {}
        now_ms = self.now_ms()
        if method.startswith("worker."):
            return await self._worker_request(method, data)
        target = self.objects.get(target_id) if target_id else None
        if target is None:
            raise InvalidStateError(f"{method}: no object with id {target_id!r} (closed?)")
        kind = method.split(".", 1)[0]
        handler = getattr(self, "_" + kind + "_" + method.split(".", 1)[1], None)
        if handler is None:
            raise TypeError(f"unknown method {method!r}")
        result = handler(target, data, now_ms)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def _in_order(self, channel_id: str | None, seq: int) -> None:
        """Wait until request ``seq`` of ``channel_id`` is the next one to start, then mark it
        started. A predecessor missing for ``REQUEST_ORDER_WAIT_S`` is given up on (counted in
        ``request_order_timeouts``): order degrades, nothing hangs."""
        expected = self._next_seq.get(channel_id, 0)
        if seq > expected:
            future = asyncio.get_running_loop().create_future()
            self._seq_waiters[(channel_id, seq)] = future
            try:
                await asyncio.wait_for(future, REQUEST_ORDER_WAIT_S)
            except asyncio.TimeoutError:
                self.request_order_timeouts += 1
            finally:
                self._seq_waiters.pop((channel_id, seq), None)
            expected = self._next_seq.get(channel_id, 0)
        if seq >= expected:
            self._next_seq[channel_id] = seq + 1
            waiter = self._seq_waiters.get((channel_id, seq + 1))
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _worker_request(self, method: str, data: dict) -> Any:
        # --- webrtc server / ice-tcp (issue 7) ---
        if method == "worker.createWebRtcServer":
            from .webrtc_server import WebRtcServer, validate_webrtc_server_options

            server = WebRtcServer(self, data.get("webRtcServerId") or str(uuid.uuid4()), validate_webrtc_server_options(data))
            await server.open()
            if self.closed:
                server.close()
                raise InvalidStateError("worker closed")
            self.webrtc_servers[server.id] = server
            self.objects[server.id] = server
            return {"id": server.id, "localAddresses": server.local_addrs}
        # --- end webrtc server / ice-tcp ---
        if method == "worker.createRouter":
            router_id = data.get("routerId") or str(uuid.uuid4())
            router = Router(self, router_id, data.get("mediaCodecs"), data.get("appData"))
            self.routers[router_id] = router
            self.objects[router_id] = router
            return {"id": router_id, "rtpCapabilities": router.rtp_capabilities}
        if method == "worker.dump":
            return self.dump()
        if method == "worker.getResourceUsage":
            return self.get_resource_usage()
        if method == "worker.close":
            self.close()
            return None
        if method == "worker.getLoad":
            return self.get_load()
        if method == "worker.debugProfile":
            return await self.debug_profile(float(data.get("seconds", 5.0)), int(data.get("top", 40)))
        if method == "worker.updateSettings":
            s = validate_worker_settings({**self.settings, **data})
            self.settings.update({k: s[k] for k in ("log_level", "log_tags")})
            return None
        raise TypeError(f"unknown method {method!r}")

    # router.*
    async def _router_createWebRtcTransport(self, router: Router, data: dict, now_ms: int) -> dict:
        return await router.create_webrtc_transport(data)

    async def _router_createPipeTransport(self, router: Router, data: dict, now_ms: int) -> dict:
        return await router.create_pipe_transport(data)

    # --- PlainTransport / DirectTransport (issue 7) -------------------------------------------
    async def _router_createPlainTransport(self, router: Router, data: dict, now_ms: int) -> dict:
        return await router.create_plain_transport(data)

    def _router_createDirectTransport(self, router: Router, data: dict, now_ms: int) -> dict:
        return router.create_direct_transport(data)

    @staticmethod
    def _direct(obj, what: str):
        transport = getattr(obj, "transport", obj)
        if getattr(transport, "kind", None) != "direct":
            raise UnsupportedError(f"{what}: only on a DirectTransport")
        return transport

    def _transport_sendRtcp(self, t, data: dict, now_ms: int) -> None:
        self._direct(t, "send_rtcp").receive_rtcp_from_driver(data.get("packet"), now_ms)

    async def _transport_callHandler(self, t, data: dict, now_ms: int):
        return await self._direct(t, "call_handler").call_handler(data.get("name"), list(data.get("args") or ()))

    def _producer_send(self, p, data: dict, now_ms: int) -> int:
        return self._direct(p, "producer.send").producer_send(p, data.get("packets") or [], now_ms)
    # --- end PlainTransport / DirectTransport ---------------------------------------------------

    def _router_canConsume(self, router: Router, data: dict, now_ms: int) -> bool:
        return router.can_consume(data.get("producerId"), data.get("rtpCapabilities"))

    def _router_dump(self, router: Router, data: dict, now_ms: int) -> dict:
        return router.dump()

    def _router_close(self, router: Router, data: dict, now_ms: int) -> None:
        router.close()
        self.routers.pop(router.id, None)

    # --- webrtc server / ice-tcp (issue 7): webRtcServer.* ---
    def _webRtcServer_close(self, server, data: dict, now_ms: int) -> None:
        server.close()
        self.webrtc_servers.pop(server.id, None)
        self.objects.pop(server.id, None)

    def _webRtcServer_dump(self, server, data: dict, now_ms: int) -> dict:
        return server.dump()
    # --- end webrtc server / ice-tcp ---

    # transport.*
    def _transport_connect(self, t, data: dict, now_ms: int) -> dict:
        return t.connect(data, now_ms)

    def _transport_restartIce(self, t, data: dict, now_ms: int) -> dict:
        return t.restart_ice()

    def _transport_produce(self, t, data: dict, now_ms: int) -> dict:
        return t.produce(data, now_ms)

    def _transport_consume(self, t, data: dict, now_ms: int) -> dict:
        return t.consume(data, now_ms)

    def _transport_getStats(self, t, data: dict, now_ms: int) -> list:
        return t.get_stats(now_ms)

    def _transport_dump(self, t, data: dict, now_ms: int) -> dict:
        return t.dump()

    def _transport_close(self, t, data: dict, now_ms: int) -> None:
        t.router.close_transport(t)

    def _transport_setDebugReceiveLoss(self, t, data: dict, now_ms: int) -> None:
        fraction = data.get("fraction")
        if not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
            raise TypeError("fraction must be a number in [0, 1)")
        t.debug_receive_loss = float(fraction)

    def _transport_setDebugSendLoss(self, t, data: dict, now_ms: int) -> None:
        fraction = data.get("fraction")
        if not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
            raise TypeError("fraction must be a number in [0, 1)")
        t.debug_send_loss = float(fraction)

    # --- bwe (issue 6) ---
    @staticmethod
    def _bitrate(data: dict) -> int:
        bitrate = data.get("bitrate")
        if not isinstance(bitrate, int) or isinstance(bitrate, bool) or bitrate < 0:
            raise TypeError("bitrate must be a non-negative int (bps; 0: no limit)")
        return bitrate

    @staticmethod
    def _bwe_of(t, method: str):
        if getattr(t, "bwe", None) is None:
            raise UnsupportedError(f"{method}: only WebRtcTransports estimate bandwidth")
        return t.bwe

    def _transport_setMaxIncomingBitrate(self, t, data: dict, now_ms: int) -> None:
        """mediasoup: a REMB caps the remote sender (0: no cap)."""
        bitrate = self._bitrate(data)
        self._bwe_of(t, "set_max_incoming_bitrate").set_max_incoming_bitrate(bitrate, now_ms)

    def _transport_setMaxOutgoingBitrate(self, t, data: dict, now_ms: int) -> None:
        """mediasoup: caps the estimate handed to the consumers; must be >= the min (0: none)."""
        bitrate = self._bitrate(data)
        bwe = self._bwe_of(t, "set_max_outgoing_bitrate")
        if bitrate and bwe.send_side.min_outgoing_bitrate and bitrate < bwe.send_side.min_outgoing_bitrate:
            raise ValueError("bitrate: max outgoing bitrate must be >= the min outgoing bitrate")
        bwe.set_max_outgoing_bitrate(bitrate)

    def _transport_setMinOutgoingBitrate(self, t, data: dict, now_ms: int) -> None:
        """mediasoup: a floor for the estimate handed to the consumers; <= the max (0: none)."""
        bitrate = self._bitrate(data)
        bwe = self._bwe_of(t, "set_min_outgoing_bitrate")
        if bitrate and bwe.send_side.max_outgoing_bitrate and bitrate > bwe.send_side.max_outgoing_bitrate:
            raise ValueError("bitrate: min outgoing bitrate must be <= the max outgoing bitrate")
        bwe.set_min_outgoing_bitrate(bitrate)

    def _transport_enableTraceEvent(self, t, data: dict, now_ms: int) -> None:
        """Trace types ``bwe`` and ``probation`` on WebRtcTransports (mediasoup's others raise)."""
        types = data.get("types") or []
        if not isinstance(types, list) or not all(isinstance(x, str) for x in types):
            raise TypeError("types must be a list of strings")
        unsupported = [x for x in types if x not in ("bwe", "probation")]
        if unsupported:
            raise UnsupportedError(f"enable_trace_event: trace types {unsupported} are not supported")
        if types:
            self._bwe_of(t, "enable_trace_event").enable_trace_event(types)
        elif getattr(t, "bwe", None) is not None:
            t.bwe.enable_trace_event([])
    # --- end bwe ---

    # --- rtp observers (issue 7) ---
    def _router_createAudioLevelObserver(self, router: Router, data: dict, now_ms: int) -> dict:
        return router.create_rtp_observer("audiolevel", data, now_ms)

    def _router_createActiveSpeakerObserver(self, router: Router, data: dict, now_ms: int) -> dict:
        return router.create_rtp_observer("activespeaker", data, now_ms)

    def _rtpObserver_addProducer(self, o, data: dict, now_ms: int) -> None:
        o.add_producer(o.router.rtp_observer_producer(data), now_ms)

    def _rtpObserver_removeProducer(self, o, data: dict, now_ms: int) -> None:
        o.remove_producer(o.router.rtp_observer_producer(data), now_ms)

    def _rtpObserver_pause(self, o, data: dict, now_ms: int) -> None:
        o.pause(now_ms)

    def _rtpObserver_resume(self, o, data: dict, now_ms: int) -> None:
        o.resume(now_ms)

    def _rtpObserver_close(self, o, data: dict, now_ms: int) -> None:
        o.router.close_rtp_observer(o)

    def _rtpObserver_dump(self, o, data: dict, now_ms: int) -> dict:
        return o.dump()
    # --- end rtp observers ---

    # producer.*
    def _producer_pause(self, p, data: dict, now_ms: int) -> None:
        if p.paused:
            return
        p.paused = True
        for c in p.consumers:
            c.set_producer_paused(True, now_ms)
            self.emit(c.id, "producerpause", None)

    def _producer_resume(self, p, data: dict, now_ms: int) -> None:
        if not p.paused:
            return
        p.paused = False
        for c in p.consumers:
            c.set_producer_paused(False, now_ms)
            self.emit(c.id, "producerresume", None)

    def _producer_close(self, p, data: dict, now_ms: int) -> None:
        p.transport.router.close_producer(p)

    def _producer_getStats(self, p, data: dict, now_ms: int) -> list:
        return p.get_stats(now_ms)

    def _producer_dump(self, p, data: dict, now_ms: int) -> dict:
        return p.dump()

    def _producer_enableTraceEvent(self, p, data: dict, now_ms: int) -> None:
        if data.get("types"):
            raise UnsupportedError("enable_trace_event: trace events are not supported yet")

    # --- data channels (issue 7) ------------------------------------------------------------
    def _transport_produceData(self, t, data: dict, now_ms: int) -> dict:
        return t.produce_data(data, now_ms)

    def _transport_consumeData(self, t, data: dict, now_ms: int) -> dict:
        return t.consume_data(data, now_ms)

    def _dataProducer_pause(self, p, data: dict, now_ms: int) -> None:
        set_data_producer_paused(p.transport.router, p, True)

    def _dataProducer_resume(self, p, data: dict, now_ms: int) -> None:
        set_data_producer_paused(p.transport.router, p, False)

    def _dataProducer_close(self, p, data: dict, now_ms: int) -> None:
        p.transport.router.close_data_producer(p)

    def _dataProducer_getStats(self, p, data: dict, now_ms: int) -> list:
        return p.get_stats(now_ms)

    def _dataProducer_dump(self, p, data: dict, now_ms: int) -> dict:
        return p.dump()

    def _dataProducer_send(self, p, data: dict, now_ms: int) -> int:
        return p.transport.producer_send_data(p, data.get("messages") or [], now_ms)

    def _dataConsumer_pause(self, c, data: dict, now_ms: int) -> None:
        c.pause()

    def _dataConsumer_resume(self, c, data: dict, now_ms: int) -> None:
        c.resume()

    def _dataConsumer_close(self, c, data: dict, now_ms: int) -> None:
        c.transport.router.close_data_consumer(c)

    def _dataConsumer_getStats(self, c, data: dict, now_ms: int) -> list:
        sctp = c.transport.sctp
        return sctp.data_consumer_stats(c, now_ms) if sctp is not None and c.type == "sctp" else c.get_stats(now_ms)

    def _dataConsumer_dump(self, c, data: dict, now_ms: int) -> dict:
        return c.dump()

    def _dataConsumer_getBufferedAmount(self, c, data: dict, now_ms: int) -> int:
        return self._dataConsumer_getStats(c, data, now_ms)[0]["bufferedAmount"]

    def _dataConsumer_setBufferedAmountLowThreshold(self, c, data: dict, now_ms: int) -> None:
        t = c.transport
        if t.sctp is not None and c.type == "sctp":
            t.sctp.set_buffered_amount_low_threshold(c, data.get("threshold"))
            t._sctp_flush(now_ms)
        elif c.set_buffered_amount_low_threshold(data.get("threshold")):
            self.emit(c.id, "bufferedamountlow", c.buffered_amount)

    def _dataConsumer_send(self, c, data: dict, now_ms: int) -> bool:
        return c.transport.data_consumer_send(c, data["payload"], data["ppid"], now_ms)

    def _dataConsumer_setSubchannels(self, c, data: dict, now_ms: int) -> list:
        return c.set_subchannels(data.get("subchannels") or [])

    def _dataConsumer_addSubchannel(self, c, data: dict, now_ms: int) -> list:
        return c.add_subchannel(data.get("subchannel"))

    def _dataConsumer_removeSubchannel(self, c, data: dict, now_ms: int) -> list:
        return c.remove_subchannel(data.get("subchannel"))
    # --- end data channels --------------------------------------------------------------------

    # consumer.*
    def _consumer_pause(self, c, data: dict, now_ms: int) -> None:
        c.set_paused(True, now_ms)

    def _consumer_resume(self, c, data: dict, now_ms: int) -> None:
        c.set_paused(False, now_ms)

    def _consumer_close(self, c, data: dict, now_ms: int) -> None:
        c.transport.router.close_consumer(c)

    def _consumer_getStats(self, c, data: dict, now_ms: int) -> list:
        return c.get_stats(now_ms)

    def _consumer_dump(self, c, data: dict, now_ms: int) -> dict:
        return c.dump()

    def _consumer_requestKeyFrame(self, c, data: dict, now_ms: int) -> None:
        c.request_key_frame(now_ms)

    def _consumer_setPriority(self, c, data: dict, now_ms: int) -> int:
        priority = data.get("priority")
        if not isinstance(priority, int) or isinstance(priority, bool) or priority < 1:
            raise TypeError("priority must be an int >= 1")
        c.priority = priority
        return priority

    def _consumer_setPreferredLayers(self, c, data: dict, now_ms: int) -> None:
        layers = data.get("preferredLayers")
        if not isinstance(layers, dict) or not isinstance(layers.get("spatialLayer"), int):
            raise TypeError("preferred_layers.spatialLayer must be an int")
        # --- simulcast / SVC (issue 5): the layered consumers apply them and return them ---
        set_layers = getattr(c, "set_preferred_layers", None)
        if set_layers is not None:
            return set_layers(layers, now_ms)
        # --- end simulcast / SVC ---
        return None  # a simple consumer has no layers (mediasoup ignores it too)

    def _consumer_enableTraceEvent(self, c, data: dict, now_ms: int) -> None:
        if data.get("types"):
            raise UnsupportedError("enable_trace_event: trace events are not supported yet")

    #: get_load() rates are over windows of at least this long, so several callers (rooms,
    #: notebooks, benchmarks) read the same figures instead of stealing each other's interval.
    LOAD_WINDOW_S = 1.0

    def get_load(self) -> dict:
        """Load of this worker: ``{"cpuShare": 0..1 of one core, "packetsInPerSecond",
        "packetsOutPerSecond" (RTP, all transports), "windowS", "routers", "transports",
        "producers", "consumers", "routerConsumers": {router_id: consumers}}``.

        The rates cover the last completed window of ≥ ``LOAD_WINDOW_S`` (the first call covers
        the time since start). The cluster layer places rooms with it."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = ru.ru_utime + ru.ru_stime
        now = time.monotonic()
        transports = [t for r in self.routers.values() for t in r.transports.values()]
        pkts_in = self.retired_packets_in + sum(t.rtp_packets_received for t in transports)
        pkts_out = self.retired_packets_out + sum(t.rtp_packets_sent for t in transports)
        mark = self._load_mark or (self._started_s, 0.0, 0, 0)
        if self._load_rates is None or now - mark[0] >= self.LOAD_WINDOW_S:
            elapsed = max(1e-6, now - mark[0])
            self._load_rates = {
                "cpuShare": max(0.0, (cpu_s - mark[1]) / elapsed),
                "packetsInPerSecond": max(0, pkts_in - mark[2]) / elapsed,
                "packetsOutPerSecond": max(0, pkts_out - mark[3]) / elapsed,
                "windowS": elapsed,
            }
            self._load_mark = (now, cpu_s, pkts_in, pkts_out)
        return {
            **self._load_rates,
            "routers": len(self.routers),
            "transports": len(transports),
            "producers": sum(len(r.producers) for r in self.routers.values()),
            "consumers": sum(len(r.consumers) for r in self.routers.values()),
            "routerConsumers": {rid: len(r.consumers) for rid, r in self.routers.items()},
        }

    @staticmethod
    async def debug_profile(seconds: float, top: int) -> str:
        """cProfile the actor's event loop thread for ``seconds``; returns the ``top`` functions by
        internal time as text (benchmarks use it; ~2x slowdown while it runs)."""
        import cProfile
        import io
        import pstats

        if not 0 < seconds <= 60:
            raise TypeError("seconds must be in (0, 60]")
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            await asyncio.sleep(seconds)
        finally:
            profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
        return out.getvalue()

    # ------------------------------------------------------------------ info and lifecycle
    def dump(self) -> dict:
        """mediasoup ``WorkerDump``."""
        return {
            "pid": os.getpid(),
            "webRtcServerIds": list(self.webrtc_servers),  # webrtc server (issue 7)
            "routerIds": list(self.routers),
            "channelMessageHandlers": {"channelRequestHandlers": list(self.objects), "channelNotificationHandlers": []},
            "timerErrors": self.timer_errors,
        }

    @staticmethod
    def get_resource_usage() -> dict:
        """getrusage(RUSAGE_SELF) of the actor process in mediasoup's ``WorkerResourceUsage``
        shape; ``ru_utime``/``ru_stime`` in ms (float), ``ru_maxrss`` in KiB."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "ru_utime": ru.ru_utime * 1000.0,
            "ru_stime": ru.ru_stime * 1000.0,
            "ru_maxrss": ru.ru_maxrss,
            "ru_ixrss": ru.ru_ixrss,
            "ru_idrss": ru.ru_idrss,
            "ru_isrss": ru.ru_isrss,
            "ru_minflt": ru.ru_minflt,
            "ru_majflt": ru.ru_majflt,
            "ru_nswap": ru.ru_nswap,
            "ru_inblock": ru.ru_inblock,
            "ru_oublock": ru.ru_oublock,
            "ru_msgsnd": ru.ru_msgsnd,
            "ru_msgrcv": ru.ru_msgrcv,
            "ru_nsignals": ru.ru_nsignals,
            "ru_nvcsw": ru.ru_nvcsw,
            "ru_nivcsw": ru.ru_nivcsw,
        }

    def close(self) -> None:
        if self.closed:
            return
        for router in list(self.routers.values()):
            router.close()
        self.routers.clear()
        for server in list(self.webrtc_servers.values()):  # webrtc server (issue 7)
            server.close()
        self.webrtc_servers.clear()
        self.closed = True
        if self._tick_task is not None:
            self._tick_task.cancel()
        for sub_id in list(self._subscribers):
            self._wakeups[sub_id].set()


class WorkerActor:
    """Ray actor shell around :class:`WorkerCore` (wrapped with ``ray.remote`` in ``api``)."""

    def __init__(self, settings: dict) -> None:
        self.core = WorkerCore(settings)

    async def ready(self) -> dict:
        """Start the timers; returns ``{"pid", "nodeId", "nodeIp"}``."""
        import ray

        self.core.start()
        ctx = ray.get_runtime_context()
        return {"pid": os.getpid(), "nodeId": ctx.get_node_id(), "nodeIp": ray.util.get_node_ip_address(), "loop": type(asyncio.get_running_loop()).__module__}

    async def request(self, method: str, target_id: str | None, data: dict,
                      channel_id: str | None = None, seq: int | None = None) -> Any:
        return await self.core.request(method, target_id, data, channel_id, seq)

    async def poll_events(self, sub_id: str, timeout_s: float = 1.0) -> list | None:
        return await self.core.poll_events(sub_id, timeout_s)

    async def subscribe(self, sub_id: str) -> None:
        self.core.subscribe(sub_id)

    async def unsubscribe(self, sub_id: str) -> None:
        self.core.unsubscribe(sub_id)
