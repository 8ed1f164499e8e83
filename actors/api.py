"""Driver-side handles: mediasoup's object model in Python, backed by WorkerActors.

Every handle holds the id of an object inside one WorkerActor and a :class:`_Channel` to that
actor. Methods that ask the worker something are coroutines (``await router.dump()``);
``close()`` is synchronous and fire-and-forget, as in mediasoup, and cascades locally at once
(children get ``transportclose``/``routerclose``/``workerclose``). Events the worker originates
(``producerclose``, ``producerpause``, ``icestatechange``, ...) arrive through one long-poll per
worker and process, and are emitted on the handle (``handle.on("event", callback)``, pyee).
Every handle has ``id``, ``closed``, ``app_data``, ``observer`` (an emitter of ``close`` and
``new*`` events), as mediasoup.

Errors: ``TypeError``/``ValueError`` for bad arguments (message names the field),
``UnsupportedError``, ``InvalidStateError`` for calls on closed objects; worker-side errors are
re-raised in the driver as the same class.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import uuid
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from raysfu.transport import ortc
from raysfu.transport.errors import InvalidStateError, UnsupportedError

from .worker import WorkerActor, validate_worker_settings

log = logging.getLogger("raysfu")

_POLL_TIMEOUT_S = 1.0


class _Emitter(AsyncIOEventEmitter):
    """pyee emitter that never raises for an unhandled ``error`` event."""

    def emit(self, event: str, *args: Any, **kwargs: Any) -> bool:  # type: ignore[override]
        if event == "error" and not self.listeners("error"):
            log.warning("unhandled error event: %s", args)
            return False
        try:
            return super().emit(event, *args, **kwargs)
        except RuntimeError:  # no running loop for an async listener: drop, never crash
            return False


def _unwrap_ray_error(exc: BaseException) -> BaseException:
    """Ray wraps an actor-side exception in RayTaskError; return the original class if we can."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    return exc


async def _quietly(coro) -> None:
    """Await ``coro`` and log instead of raising (event-driven follow-ups such as pause across
    a pipe, where the far object may already be closed)."""
    try:
        await coro
    except Exception as exc:
        log.debug("ignored: %s", exc)


class _Channel:
    """One worker actor as seen from this process: requests and the event long-poll."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.sub_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.handles: dict[str, Any] = {}
        self._poll_task: asyncio.Task | None = None
        self._subscribed: asyncio.Future | None = None
        self.closed = False
        self.on_died: Any = None
        self._seq = 0  # requests and notifications are numbered: the worker starts them in order

    def _submit(self, method: str, target_id: str | None, data: dict | None):
        """Submit one request; the worker starts a channel's requests in the order they were
        submitted (Ray does not keep the order of an async actor's tasks by itself)."""
        ref = self.actor.request.remote(method, target_id, data or {}, self.sub_id, self._seq)
        self._seq += 1  # only once submitted: a request that failed to submit leaves no gap
        return ref

    async def start(self) -> None:
        """Subscribe to the worker's events and start the long-poll (idempotent)."""
        if self._poll_task is None:
            loop = asyncio.get_running_loop()
            self._subscribed = loop.create_future()
            self._poll_task = loop.create_task(self._start_and_poll())
        await asyncio.shield(self._subscribed)

    async def request(self, method: str, target_id: str | None = None, data: dict | None = None) -> Any:
        if self.closed:
            raise InvalidStateError("worker closed")
        try:
            if self._poll_task is None:  # a handle unpickled in this process: subscribe on first use
                await self.start()
            return await self._submit(method, target_id, data)
        except Exception as exc:  # re-raise the worker's own error class
            import ray.exceptions

            if isinstance(exc, ray.exceptions.RayActorError):
                raise InvalidStateError(f"worker died: {exc}") from exc
            raise _unwrap_ray_error(exc) from None

    def notify(self, method: str, target_id: str | None = None, data: dict | None = None) -> None:
        """Fire a request without waiting (used by ``close()``); errors are logged."""
        if self.closed:
            return
        ref = self._submit(method, target_id, data)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        async def _wait() -> None:
            try:
                await ref
            except Exception as exc:  # the object may already be gone: not an error for close()
                log.debug("%s on %s: %s", method, target_id, exc)

        loop.create_task(_wait())

    async def _start_and_poll(self) -> None:
        try:
            await self.actor.subscribe.remote(self.sub_id)
        except BaseException as exc:
            if not self._subscribed.done():
                self._subscribed.set_exception(exc)
                self._subscribed.exception()  # retrieved: start() re-raises it
            self._poll_task = None
            return
        self._subscribed.set_result(None)
        await self._poll_loop()

    async def _poll_loop(self) -> None:
        import ray.exceptions

        while not self.closed:
            try:
                events = await self.actor.poll_events.remote(self.sub_id, _POLL_TIMEOUT_S)
            except asyncio.CancelledError:
                return
            except ray.exceptions.RayActorError as exc:
                if not self.closed and self.on_died is not None:
                    self.on_died(exc)
                return
            except Exception as exc:  # transient: keep polling
                log.warning("event poll failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if events is None:
                return
            for target_id, event, data in events:
                handle = self.handles.get(target_id)
                if handle is not None:
                    try:
                        handle._on_notification(event, data)
                    except Exception:
                        log.exception("handler for %s %s failed", target_id, event)

    def close(self) -> None:
        self.closed = True
        if self._poll_task is not None:
            self._poll_task.cancel()


class _Handle(_Emitter):
    """Common fields of every handle."""

    _kind = "object"

    def __init__(self, channel: _Channel, object_id: str, app_data: Any) -> None:
        super().__init__()
        self._channel = channel
        self._id = object_id
        self._closed = False
        self._app_data = app_data if app_data is not None else {}
        self._observer = _Emitter()
        channel.handles[object_id] = self

    @property
    def id(self) -> str:
        return self._id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def app_data(self) -> Any:
        return self._app_data

    @app_data.setter
    def app_data(self, value: Any) -> None:
        self._app_data = value

    @property
    def observer(self) -> _Emitter:
        return self._observer

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidStateError(f"{self._kind} closed")

    async def _request(self, method: str, data: dict | None = None) -> Any:
        self._check_open()
        return await self._channel.request(method, self._id, data)

    def _mark_closed(self, event: str | None) -> bool:
        """Close locally; emit ``event`` (e.g. "transportclose") then observer ``close``."""
        if self._closed:
            return False
        self._closed = True
        self._channel.handles.pop(self._id, None)
        if event:
            self.emit(event)
        self._observer.emit("close")
        return True

    def _source_paused(self, attr: str, paused: bool, event: str) -> None:
        """A consumer's source (producer / data producer) paused or resumed in the worker: set
        ``attr``, emit ``event``, and observer ``pause``/``resume`` unless paused itself."""
        if getattr(self, attr) == paused:
            return
        setattr(self, attr, paused)
        self.emit(event)
        if not self._paused:
            self._observer.emit("pause" if paused else "resume")

    def _on_notification(self, event: str, data: Any) -> None:  # pragma: no cover - overridden
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._id}{' closed' if self._closed else ''}>"

    def __reduce__(self):
        raise TypeError(
            f"a {type(self).__name__} handle does not pickle: pass its id (Worker and Router handles pickle)"
        )


# ---------------------------------------------------------------------------------------------
class Producer(_Handle):
    """mediasoup ``Producer``. Events: ``transportclose``, ``score``; observer: ``close``,
    ``pause``, ``resume``, ``score``."""

    _kind = "producer"

    def __init__(self, channel: _Channel, transport: "WebRtcTransport", info: dict, app_data: Any) -> None:
        super().__init__(channel, info["id"], app_data)
        self._transport = transport
        self._kind_ = info["kind"]
        self._rtp_parameters = info["rtpParameters"]
        self._type = info["type"]
        self._consumable = info["consumableRtpParameters"]
        self._paused = info["paused"]
        self._score: list = []

    kind = property(lambda self: self._kind_)
    rtp_parameters = property(lambda self: self._rtp_parameters)
    type = property(lambda self: self._type)
    consumable_rtp_parameters = property(lambda self: self._consumable)
    paused = property(lambda self: self._paused)
    score = property(lambda self: self._score)

    def close(self) -> None:
        if self._closed:
            return
        self._channel.notify("producer.close", self._id)
        self._transport._producers.pop(self._id, None)
        self._mark_closed(None)

    async def pause(self) -> None:
        await self._request("producer.pause")
        was = self._paused
        self._paused = True
        if not was:
            self._observer.emit("pause")

    async def resume(self) -> None:
        await self._request("producer.resume")
        was = self._paused
        self._paused = False
        if was:
            self._observer.emit("resume")

    async def get_stats(self) -> list[dict]:
        """mediasoup ``ProducerStat[]`` (``inbound-rtp`` per stream)."""
        return await self._request("producer.getStats")

    async def dump(self) -> dict:
        return await self._request("producer.dump")

    async def enable_trace_event(self, types: list[str] | None = None) -> None:
        await self._request("producer.enableTraceEvent", {"types": types or []})

    # --- DirectTransport: producer.send (issue 7) ----------------------------------------------
    _SEND_BATCH = 256  # packets per request at most

    def send(self, rtp_packet: bytes) -> None:
        """mediasoup ``producer.send(rtpPacket)``: inject one RTP packet into a producer of a
        DirectTransport. Fire-and-forget: the packets given in one event-loop turn reach the
        worker in one request, in order. Raises ``TypeError`` (not bytes, or shorter than an RTP
        header), ``UnsupportedError`` (not a DirectTransport producer), ``InvalidStateError``."""
        self._check_open()
        if getattr(self._transport, "_type", None) != "direct":
            raise UnsupportedError("send(): only producers of a DirectTransport take injected RTP")
        if not isinstance(rtp_packet, (bytes, bytearray, memoryview)):
            raise TypeError("rtp_packet must be bytes")
        if len(rtp_packet) < 12:
            raise TypeError("rtp_packet is shorter than an RTP header (12 bytes)")
        queue = getattr(self, "_send_queue", None)
        if queue is None:
            queue = self._send_queue = []
        queue.append(bytes(rtp_packet))
        if len(queue) >= self._SEND_BATCH:
            self._flush_send()
        elif len(queue) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._flush_send)
            except RuntimeError:  # no loop: send at once
                self._flush_send()

    def _flush_send(self) -> None:
        queue = getattr(self, "_send_queue", None)
        if queue and not self._closed:
            self._send_queue = []
            self._channel.notify("producer.send", self._id, {"packets": queue})
    # --- end producer.send ------------------------------------------------------------------

    def _on_notification(self, event: str, data: Any) -> None:
        if event == "transportclose":
            self._transport._producers.pop(self._id, None)
            self._mark_closed("transportclose")
        elif event == "score":
            self._score = data
            self.emit("score", data)
            self._observer.emit("score", data)


class Consumer(_Handle):
    """mediasoup ``Consumer``. Events: ``transportclose``, ``producerclose``, ``producerpause``,
    ``producerresume``, ``score``, ``layerschange``; observer: ``close``, ``pause``, ``resume``."""

    _kind = "consumer"

    def __init__(self, channel: _Channel, transport: "WebRtcTransport", info: dict, app_data: Any) -> None:
        super().__init__(channel, info["id"], app_data)
        self._transport = transport
        self._producer_id = info["producerId"]
        self._kind_ = info["kind"]
        self._rtp_parameters = info["rtpParameters"]
        self._type = info["type"]
        self._paused = info["paused"]
        self._producer_paused = info["producerPaused"]
        self._score = info.get("score")
        self._priority = 1
        self._preferred_layers = info.get("preferredLayers")  # simulcast / SVC (issue 5)
        self._current_layers = info.get("currentLayers")

    producer_id = property(lambda self: self._producer_id)
    kind = property(lambda self: self._kind_)
    rtp_parameters = property(lambda self: self._rtp_parameters)
    type = property(lambda self: self._type)
    paused = property(lambda self: self._paused)
    producer_paused = property(lambda self: self._producer_paused)
    priority = property(lambda self: self._priority)
    score = property(lambda self: self._score)
    preferred_layers = property(lambda self: self._preferred_layers)
    current_layers = property(lambda self: self._current_layers)

    def close(self) -> None:
        if self._closed:
            return
        self._channel.notify("consumer.close", self._id)
        self._transport._consumers.pop(self._id, None)
        self._mark_closed(None)

    async def pause(self) -> None:
        await self._request("consumer.pause")
        was = self._paused
        self._paused = True
        if not was and not self._producer_paused:
            self._observer.emit("pause")

    async def resume(self) -> None:
        await self._request("consumer.resume")
        was = self._paused
        self._paused = False
        if was and not self._producer_paused:
            self._observer.emit("resume")

    async def set_preferred_layers(self, spatial_layer: int, temporal_layer: int | None = None) -> None:
        """mediasoup ``setPreferredLayers({spatialLayer, temporalLayer})``; TypeError on bad ints."""
        if not isinstance(spatial_layer, int) or isinstance(spatial_layer, bool):
            raise TypeError("spatial_layer must be an int")
        if temporal_layer is not None and (not isinstance(temporal_layer, int) or isinstance(temporal_layer, bool)):
            raise TypeError("temporal_layer must be an int")
        layers = {"spatialLayer": spatial_layer}
        if temporal_layer is not None:
            layers["temporalLayer"] = temporal_layer
        # simulcast / SVC (issue 5): the worker returns the (clamped) preferred layers
        result = await self._request("consumer.setPreferredLayers", {"preferredLayers": layers})
        if result is not None:
            self._preferred_layers = result

    async def set_priority(self, priority: int) -> None:
        """mediasoup ``setPriority(n)``; ``TypeError`` unless an int >= 1."""
        self._priority = await self._request("consumer.setPriority", {"priority": priority})

    async def unset_priority(self) -> None:
        self._priority = await self._request("consumer.setPriority", {"priority": 1})

    async def request_key_frame(self) -> None:
        """mediasoup ``requestKeyFrame()``: PLI/FIR to the producer (throttled to 1/s there)."""
        await self._request("consumer.requestKeyFrame")

    async def get_stats(self) -> list[dict]:
        """mediasoup ``ConsumerStat[]``: ``[outbound-rtp, producer inbound-rtp...]``."""
        return await self._request("consumer.getStats")

    async def dump(self) -> dict:
        return await self._request("consumer.dump")

    async def enable_trace_event(self, types: list[str] | None = None) -> None:
        await self._request("consumer.enableTraceEvent", {"types": types or []})

    def _on_notification(self, event: str, data: Any) -> None:
        if event == "rtp":  # a DirectTransport consumer's packet (issue 7)
            self.emit("rtp", data)
            return
        if event in ("producerclose", "transportclose"):
            self._transport._consumers.pop(self._id, None)
            self._mark_closed(event)
        elif event in ("producerpause", "producerresume"):
            self._source_paused("_producer_paused", event == "producerpause", event)
        elif event == "score":
            self._score = data
            self.emit("score", data)
        elif event == "layerschange":
            self._current_layers = data
            self.emit("layerschange", data)


# --- data channels (issue 7) ---------------------------------------------------------------------
class DataProducer(_Handle):
    """mediasoup ``DataProducer``: ``type`` "sctp" (an endpoint's data channel) or "direct" (a
    DirectTransport's: :meth:`send` from Python). Events: ``transportclose``; observer:
    ``close``, ``pause``, ``resume``."""

    _kind = "data producer"
    _SEND_BATCH = 256  # messages per request at most

    def __init__(self, channel: _Channel, transport: "Transport", info: dict, app_data: Any) -> None:
        super().__init__(channel, info["id"], app_data)
        self._transport = transport
        self._type = info["type"]
        self._sctp_stream_parameters = info.get("sctpStreamParameters")
        self._label = info["label"]
        self._protocol = info["protocol"]
        self._paused = info["paused"]
        self._send_queue: list = []

    type = property(lambda self: self._type)
    sctp_stream_parameters = property(lambda self: self._sctp_stream_parameters)
    label = property(lambda self: self._label)
    protocol = property(lambda self: self._protocol)
    paused = property(lambda self: self._paused)

    def close(self) -> None:
        if self._closed:
            return
        self._flush_send()
        self._channel.notify("dataProducer.close", self._id)
        self._transport._data_producers.pop(self._id, None)
        self._mark_closed(None)

    async def pause(self) -> None:
        """Stop forwarding (its DataConsumers get ``dataproducerpause``)."""
        await self._request("dataProducer.pause")
        was, self._paused = self._paused, True
        if not was:
            self._observer.emit("pause")

    async def resume(self) -> None:
        await self._request("dataProducer.resume")
        was, self._paused = self._paused, False
        if was:
            self._observer.emit("resume")

    async def get_stats(self) -> list[dict]:
        """``[{type: "data-producer", timestamp, label, protocol, messagesReceived, bytesReceived}]``."""
        self._flush_send()
        return await self._request("dataProducer.getStats")

    async def dump(self) -> dict:
        """``{id, type, sctpStreamParameters?, label, protocol, paused}``."""
        return await self._request("dataProducer.dump")

    def send(self, message: str | bytes, ppid: int | None = None, subchannels: list[int] | None = None,
             required_subchannel: int | None = None) -> None:
        """mediasoup ``dataProducer.send(message, ppid?, subchannels?, requiredSubchannel?)``
        (direct DataProducers only): str → PPID 51, bytes → 53, empty → 56/57. Fire-and-forget;
        the messages of one event-loop turn reach the worker in one request, in order. Raises
        ``TypeError``/``ValueError`` naming a bad argument, ``UnsupportedError`` for an "sctp"
        DataProducer, ``InvalidStateError`` when closed."""
        from .data_channels import normalize_message

        self._check_open()
        if self._type != "direct":
            raise UnsupportedError("send(): only a DataProducer of a DirectTransport sends from Python")
        ppid, payload = normalize_message(message, ppid)
        if subchannels is not None:
            if not isinstance(subchannels, (list, tuple)) or not all(
                    isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 65535 for s in subchannels):
                raise TypeError("subchannels must be a list of integers in [0, 65535]")
            subchannels = list(subchannels)
        if required_subchannel is not None and (not isinstance(required_subchannel, int) or isinstance(required_subchannel, bool)
                                                or not 0 <= required_subchannel <= 65535):
            raise TypeError("required_subchannel must be an integer in [0, 65535]")
        queue = self._send_queue
        queue.append((payload, ppid, subchannels, required_subchannel))
        if len(queue) >= self._SEND_BATCH:
            self._flush_send()
        elif len(queue) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._flush_send)
            except RuntimeError:
                self._flush_send()

    def _flush_send(self) -> None:
        if self._send_queue and not self._closed:
            queue, self._send_queue = self._send_queue, []
            self._channel.notify("dataProducer.send", self._id, {"messages": queue})

    def _on_notification(self, event: str, data: Any) -> None:
        if event == "transportclose":
            self._transport._data_producers.pop(self._id, None)
            self._mark_closed("transportclose")


class DataConsumer(_Handle):
    """mediasoup ``DataConsumer`` ("sctp": to an endpoint's data channel; "direct": its messages
    come to this process as ``message`` events). Events: ``transportclose``,
    ``dataproducerclose``, ``dataproducerpause``, ``dataproducerresume``, ``message(data,
    ppid)`` (direct; ``data`` is bytes, decode PPID 51 as UTF-8), ``bufferedamountlow(amount)``,
    ``sctpsendbufferfull``; observer: ``close``, ``pause``, ``resume``."""

    _kind = "data consumer"

    def __init__(self, channel: _Channel, transport: "Transport", info: dict, app_data: Any) -> None:
        super().__init__(channel, info["id"], app_data)
        self._transport = transport
        self._data_producer_id = info["dataProducerId"]
        self._type = info["type"]
        self._sctp_stream_parameters = info.get("sctpStreamParameters")
        self._label = info["label"]
        self._protocol = info["protocol"]
        self._paused = info["paused"]
        self._data_producer_paused = info["dataProducerPaused"]
        self._subchannels = list(info.get("subchannels") or [])

    data_producer_id = property(lambda self: self._data_producer_id)
    type = property(lambda self: self._type)
    sctp_stream_parameters = property(lambda self: self._sctp_stream_parameters)
    label = property(lambda self: self._label)
    protocol = property(lambda self: self._protocol)
    paused = property(lambda self: self._paused)
    data_producer_paused = property(lambda self: self._data_producer_paused)
    producer_paused = data_producer_paused  # the brief's name for it
    subchannels = property(lambda self: list(self._subchannels))

    def close(self) -> None:
        if self._closed:
            return
        self._channel.notify("dataConsumer.close", self._id)
        self._transport._data_consumers.pop(self._id, None)
        self._mark_closed(None)

    async def pause(self) -> None:
        await self._request("dataConsumer.pause")
        was, self._paused = self._paused, True
        if not was and not self._data_producer_paused:
            self._observer.emit("pause")

    async def resume(self) -> None:
        await self._request("dataConsumer.resume")
        was, self._paused = self._paused, False
        if was and not self._data_producer_paused:
            self._observer.emit("resume")

    async def get_stats(self) -> list[dict]:
        """``[{type: "data-consumer", timestamp, label, protocol, messagesSent, bytesSent, bufferedAmount}]``."""
        return await self._request("dataConsumer.getStats")

    async def dump(self) -> dict:
        return await self._request("dataConsumer.dump")

    async def get_buffered_amount(self) -> int:
        """Bytes queued in the SCTP association for this consumer's stream."""
        return await self._request("dataConsumer.getBufferedAmount")

    async def set_buffered_amount_low_threshold(self, threshold: int) -> None:
        """``bufferedamountlow`` fires when the buffered amount falls to ``threshold`` (bytes)."""
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0:
            raise TypeError("threshold must be a non-negative integer")
        await self._request("dataConsumer.setBufferedAmountLowThreshold", {"threshold": threshold})

    async def send(self, message: str | bytes, ppid: int | None = None) -> bool:
        """mediasoup ``dataConsumer.send(message, ppid?)``: a message from Python to this
        consumer's endpoint ("sctp" DataConsumers). Returns False when it was not sent (paused,
        too big, send buffer full)."""
        from .data_channels import normalize_message

        ppid, payload = normalize_message(message, ppid)
        return await self._request("dataConsumer.send", {"payload": payload, "ppid": ppid})

    async def set_subchannels(self, subchannels: list[int]) -> None:
        if not isinstance(subchannels, (list, tuple)):
            raise TypeError("subchannels must be a list of integers")
        self._subchannels = await self._request("dataConsumer.setSubchannels", {"subchannels": list(subchannels)})

    async def add_subchannel(self, subchannel: int) -> None:
        self._subchannels = await self._request("dataConsumer.addSubchannel", {"subchannel": subchannel})

    async def remove_subchannel(self, subchannel: int) -> None:
        self._subchannels = await self._request("dataConsumer.removeSubchannel", {"subchannel": subchannel})

    def _on_notification(self, event: str, data: Any) -> None:
        if event == "message":
            self.emit("message", data[0], data[1])
        elif event in ("dataproducerclose", "transportclose"):
            self._transport._data_consumers.pop(self._id, None)
            self._mark_closed(event)
        elif event in ("dataproducerpause", "dataproducerresume"):
            self._source_paused("_data_producer_paused", event == "dataproducerpause", event)
        elif event == "bufferedamountlow":
            self.emit("bufferedamountlow", data)
        elif event == "sctpsendbufferfull":
            self.emit("sctpsendbufferfull")


async def _transport_produce_data(transport: "Transport", *, id: str | None = None,  # noqa: A002
                                  sctp_stream_parameters: dict | None = None, label: str = "", protocol: str = "",
                                  paused: bool = False, app_data: Any = None) -> DataProducer:
    transport._check_open()
    if app_data is not None and not isinstance(app_data, dict):
        raise TypeError("app_data must be a dict")
    if transport._type != "direct" and not isinstance(sctp_stream_parameters, dict):
        raise TypeError("sctp_stream_parameters must be a dict")
    if not isinstance(label, str):
        raise TypeError("label must be a string")
    if not isinstance(protocol, str):
        raise TypeError("protocol must be a string")
    if not isinstance(paused, bool):
        raise TypeError("paused must be a boolean")
    data = {"id": id, "sctpStreamParameters": copy.deepcopy(sctp_stream_parameters), "label": label,
            "protocol": protocol, "paused": paused}
    info = await transport._request("transport.produceData", data)
    dp = DataProducer(transport._channel, transport, info, app_data)
    transport._data_producers[dp.id] = dp
    transport._observer.emit("newdataproducer", dp)
    return dp


async def _transport_consume_data(transport: "Transport", *, data_producer_id: str, ordered: bool | None = None,
                                  max_packet_life_time: int | None = None, max_retransmits: int | None = None,
                                  paused: bool = False, subchannels: list[int] | None = None,
                                  app_data: Any = None) -> DataConsumer:
    transport._check_open()
    if not isinstance(data_producer_id, str) or not data_producer_id:
        raise TypeError("data_producer_id must be a non-empty string")
    if app_data is not None and not isinstance(app_data, dict):
        raise TypeError("app_data must be a dict")
    data = {"dataProducerId": data_producer_id, "ordered": ordered, "maxPacketLifeTime": max_packet_life_time,
            "maxRetransmits": max_retransmits, "paused": paused, "subchannels": subchannels}
    info = await transport._request("transport.consumeData", {k: v for k, v in data.items() if v is not None})
    dc = DataConsumer(transport._channel, transport, info, app_data)
    transport._data_consumers[dc.id] = dc
    transport._observer.emit("newdataconsumer", dc)
    return dc
# --- end data channels ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
class Transport(_Handle):
    """What every mediasoup transport handle has: ``produce``, ``consume``, stats, close.
    Events: ``routerclose``; observer: ``close``, ``newproducer``, ``newconsumer``."""

    _kind = "transport"
    _type = "base"

    def __init__(self, channel: _Channel, router: "Router", info: dict, app_data: Any) -> None:
        super().__init__(channel, info["id"], app_data)
        self._router = router
        self._sctp_parameters = info.get("sctpParameters")
        self._sctp_state = info.get("sctpState")
        self._producers: dict[str, Producer] = {}
        self._consumers: dict[str, Consumer] = {}
        self._data_producers: dict[str, DataProducer] = {}  # data channels (issue 7)
        self._data_consumers: dict[str, DataConsumer] = {}

    sctp_parameters = property(lambda self: self._sctp_parameters)
    sctp_state = property(lambda self: self._sctp_state)

    @property
    def type(self) -> str:
        """mediasoup ``transport.type``: "webrtc" | "plain" | "pipe" | "direct"."""
        return self._type

    def close(self) -> None:
        if self._closed:
            return
        self._channel.notify("transport.close", self._id)
        self._router._transports.pop(self._id, None)
        self._close_children()
        self._on_local_close()
        self._mark_closed(None)

    def _on_local_close(self) -> None:
        pass

    def _close_children(self) -> None:
        for p in list(self._producers.values()):
            p._mark_closed("transportclose")
        for c in list(self._consumers.values()):
            c._mark_closed("transportclose")
        self._producers.clear()
        self._consumers.clear()
        # --- data channels (issue 7) ---
        for d in list(self._data_producers.values()) + list(self._data_consumers.values()):
            d._mark_closed("transportclose")
        self._data_producers.clear()
        self._data_consumers.clear()
        # --- end data channels ---

    def _router_closed(self, event: str = "routerclose") -> None:
        if self._closed:
            return
        self._close_children()
        self._mark_closed(event)

    async def get_stats(self) -> list[dict]:
        return await self._request("transport.getStats")

    async def dump(self) -> dict:
        return await self._request("transport.dump")

    async def set_max_incoming_bitrate(self, bitrate: int) -> None:
        await self._request("transport.setMaxIncomingBitrate", {"bitrate": bitrate})

    async def set_max_outgoing_bitrate(self, bitrate: int) -> None:
        await self._request("transport.setMaxOutgoingBitrate", {"bitrate": bitrate})

    async def set_min_outgoing_bitrate(self, bitrate: int) -> None:
        await self._request("transport.setMinOutgoingBitrate", {"bitrate": bitrate})

    async def enable_trace_event(self, types: list[str] | None = None) -> None:
        await self._request("transport.enableTraceEvent", {"types": types or []})

    async def set_debug_receive_loss(self, fraction: float) -> None:
        """TEST HOOK: drop ``fraction`` (0 <= f < 1) of incoming media RTP (not RTX, not RTCP)
        before any processing, as a lossy uplink would. Seeded, so runs repeat."""
        await self._request("transport.setDebugReceiveLoss", {"fraction": fraction})

    async def set_debug_send_loss(self, fraction: float) -> None:
        """TEST HOOK: drop ``fraction`` (0 <= f < 1) of the RTP this transport sends (media and
        RTX, after the retransmission buffer), as a lossy downlink would. Seeded."""
        await self._request("transport.setDebugSendLoss", {"fraction": fraction})

    async def produce(
        self,
        *,
        kind: str,
        rtp_parameters: dict,
        id: str | None = None,  # noqa: A002 - mediasoup's option name
        paused: bool = False,
        key_frame_request_delay: int = 0,
        app_data: Any = None,
    ) -> Producer:
        """mediasoup ``transport.produce()``; ``rtp_parameters`` as mediasoup-client sends it.

        Raises ``TypeError``/``ValueError`` naming the bad field, ``UnsupportedError`` for codecs
        the router lacks, ``InvalidStateError`` when closed.
        """
        self._check_open()
        if not isinstance(rtp_parameters, dict):
            raise TypeError("rtp_parameters must be a dict")
        if app_data is not None and not isinstance(app_data, dict):
            raise TypeError("app_data must be a dict")
        data = {
            "id": id,
            "kind": kind,
            "rtpParameters": copy.deepcopy(rtp_parameters),
            "paused": paused,
            "keyFrameRequestDelay": key_frame_request_delay,
        }
        info = await self._request("transport.produce", data)
        producer = Producer(self._channel, self, info, app_data)
        self._producers[producer.id] = producer
        self._router._consumable[producer.id] = producer.consumable_rtp_parameters
        self._observer.emit("newproducer", producer)
        return producer

    async def consume(
        self,
        *,
        producer_id: str,
        rtp_capabilities: dict | None = None,
        paused: bool = False,
        mid: str | None = None,
        preferred_layers: dict | None = None,
        ignore_dtx: bool = False,
        enable_rtx: bool | None = None,
        pipe: bool = False,
        app_data: Any = None,
    ) -> Consumer:
        """mediasoup ``transport.consume()``; returns a Consumer whose ``rtp_parameters`` go to
        mediasoup-client's ``transport.consume()`` untouched.

        Raises ``TypeError``/``ValueError`` (bad field, unknown producer id), ``UnsupportedError``
        (no codec in common), ``InvalidStateError`` when closed.
        """
        self._check_open()
        if not isinstance(producer_id, str) or not producer_id:
            raise TypeError("producer_id must be a non-empty string")
        if self._type != "pipe" and not isinstance(rtp_capabilities, dict):
            raise TypeError("rtp_capabilities must be a dict")
        if app_data is not None and not isinstance(app_data, dict):
            raise TypeError("app_data must be a dict")
        data = {
            "producerId": producer_id,
            "rtpCapabilities": rtp_capabilities,
            "paused": paused,
            "mid": mid,
            "preferredLayers": preferred_layers,
            "ignoreDtx": ignore_dtx,
            "enableRtx": enable_rtx,
            "pipe": pipe,
        }
        info = await self._request("transport.consume", data)
        consumer = Consumer(self._channel, self, info, app_data)
        self._consumers[consumer.id] = consumer
        self._observer.emit("newconsumer", consumer)
        return consumer

    # --- data channels (issue 7) ---
    async def produce_data(self, *, id: str | None = None, sctp_stream_parameters: dict | None = None,  # noqa: A002
                           label: str = "", protocol: str = "", paused: bool = False,
                           app_data: Any = None) -> DataProducer:
        """mediasoup ``transport.produceData()``: ``sctp_stream_parameters`` ``{streamId,
        ordered?, maxPacketLifeTime?, maxRetransmits?}`` as mediasoup-client sends them (not on a
        DirectTransport, whose DataProducers are "direct"). Raises ``TypeError``/``ValueError``
        naming the bad field (also when SCTP is not enabled), ``InvalidStateError`` when closed."""
        return await _transport_produce_data(self, id=id, sctp_stream_parameters=sctp_stream_parameters, label=label,
                                             protocol=protocol, paused=paused, app_data=app_data)

    async def consume_data(self, *, data_producer_id: str, ordered: bool | None = None,
                           max_packet_life_time: int | None = None, max_retransmits: int | None = None,
                           paused: bool = False, subchannels: list[int] | None = None,
                           app_data: Any = None) -> DataConsumer:
        """mediasoup ``transport.consumeData()``: a DataConsumer of ``data_producer_id`` (any
        transport of this router). Its ``sctp_stream_parameters`` (a fresh stream id, the
        producer's reliability unless overridden) go to mediasoup-client's ``consumeData``.
        Raises ``TypeError``/``ValueError`` naming the bad field, ``InvalidStateError``."""
        return await _transport_consume_data(self, data_producer_id=data_producer_id, ordered=ordered,
                                             max_packet_life_time=max_packet_life_time,
                                             max_retransmits=max_retransmits, paused=paused,
                                             subchannels=subchannels, app_data=app_data)
    # --- end data channels ---

    def _on_notification(self, event: str, data: Any) -> None:
        if event == "routerclose":
            self._router_closed()
        elif event == "sctpstatechange":  # data channels (issue 7)
            self._sctp_state = data
            self.emit(event, data)
            self._observer.emit(event, data)


class WebRtcTransport(Transport):
    """mediasoup ``WebRtcTransport``. Events: ``routerclose``, ``icestatechange``,
    ``iceselectedtuplechange``, ``dtlsstatechange``; observer: ``close``, ``newproducer``,
    ``newconsumer``, and the three state events."""

    _type = "webrtc"

    def __init__(self, channel: _Channel, router: "Router", info: dict, app_data: Any) -> None:
        super().__init__(channel, router, info, app_data)
        self._ice_parameters = info["iceParameters"]
        self._ice_candidates = info["iceCandidates"]
        self._ice_state = info["iceState"]
        self._ice_selected_tuple = info["iceSelectedTuple"]
        self._dtls_parameters = info["dtlsParameters"]
        self._dtls_state = info["dtlsState"]

    ice_role = property(lambda self: "controlled")
    ice_parameters = property(lambda self: self._ice_parameters)
    ice_candidates = property(lambda self: self._ice_candidates)
    ice_state = property(lambda self: self._ice_state)
    ice_selected_tuple = property(lambda self: self._ice_selected_tuple)
    dtls_parameters = property(lambda self: self._dtls_parameters)
    dtls_state = property(lambda self: self._dtls_state)
    dtls_remote_cert = property(lambda self: None)

    def _on_local_close(self) -> None:
        self._ice_state = "closed"
        self._dtls_state = "closed"

    async def connect(self, dtls_parameters: dict) -> None:
        """mediasoup ``connect({dtlsParameters})``; the local DTLS role follows the remote one."""
        if not isinstance(dtls_parameters, dict):
            raise TypeError("dtls_parameters must be a dict")
        result = await self._request("transport.connect", {"dtlsParameters": dtls_parameters})
        self._dtls_parameters = {**self._dtls_parameters, "role": result["dtlsLocalRole"]}

    async def restart_ice(self) -> dict:
        """New ``iceParameters`` (mediasoup ``restartIce()``)."""
        self._ice_parameters = await self._request("transport.restartIce")
        return self._ice_parameters

    def _on_notification(self, event: str, data: Any) -> None:
        if event == "icestatechange":
            self._ice_state = data
        elif event == "iceselectedtuplechange":
            self._ice_selected_tuple = data
        elif event == "dtlsstatechange":
            self._dtls_state = data
        elif event == "sctpstatechange":  # data channels (issue 7)
            self._sctp_state = data
        elif event == "trace":  # bwe (issue 6): {"type": "bwe"|"probation", "timestamp", "direction", "info"}
            pass
        elif event == "routerclose":
            self._router_closed()
            return
        elif event == "listenserverclose":  # webrtc server (issue 7)
            self._listen_server_closed()
            return
        else:
            return
        self.emit(event, data)
        self._observer.emit(event, data)

    # --- webrtc server / ice-tcp (issue 7) ---
    def _listen_server_closed(self) -> None:
        """Its WebRtcServer closed: the transport is closed, event ``listenserverclose``."""
        if self._closed:
            return
        self._router._transports.pop(self._id, None)
        self._close_children()
        self._on_local_close()
        self._mark_closed("listenserverclose")
    # --- end webrtc server / ice-tcp ---




class PipeTransport(Transport):
    """mediasoup ``PipeTransport``: plain RTP/RTCP (SRTP AEAD_AES_256_GCM when enabled) to a
    router in another worker. Events: ``routerclose``; observer: ``close``, ``newproducer``,
    ``newconsumer``."""

    _type = "pipe"

    def __init__(self, channel: _Channel, router: "Router", info: dict, app_data: Any) -> None:
        super().__init__(channel, router, info, app_data)
        self._tuple = info["tuple"]
        self._srtp_parameters = info.get("srtpParameters")

    tuple = property(lambda self: self._tuple)
    srtp_parameters = property(lambda self: self._srtp_parameters)

    async def connect(self, *, ip: str, port: int, srtp_parameters: dict | None = None) -> None:
        """mediasoup ``pipeTransport.connect({ip, port, srtpParameters})``: the far end's tuple
        (and its SRTP keying when SRTP is enabled). Raises ``TypeError`` naming a bad field."""
        data = {"ip": ip, "port": port}
        if srtp_parameters is not None:
            data["srtpParameters"] = srtp_parameters
        result = await self._request("transport.connect", data)
        self._tuple = result["tuple"]


# --- PlainTransport / DirectTransport handles (issue 7) ------------------------------------------
class PlainTransport(Transport):
    """mediasoup ``PlainTransport``: plain RTP/RTCP (optionally SRTP) with ffmpeg, GStreamer and
    other non-WebRTC endpoints. Events: ``routerclose``, ``tuple`` (comedia learned the remote
    RTP tuple), ``rtcptuple`` (comedia learned the RTCP tuple, without rtcp-mux); observer:
    ``close``, ``newproducer``, ``newconsumer``, ``tuple``, ``rtcptuple``."""

    _type = "plain"

    def __init__(self, channel: _Channel, router: "Router", info: dict, app_data: Any) -> None:
        super().__init__(channel, router, info, app_data)
        self._tuple = info["tuple"]
        self._rtcp_tuple = info.get("rtcpTuple")
        self._srtp_parameters = info.get("srtpParameters")
        self._rtcp_mux = info["rtcpMux"]
        self._comedia = info["comedia"]

    tuple = property(lambda self: self._tuple)
    rtcp_tuple = property(lambda self: self._rtcp_tuple)
    srtp_parameters = property(lambda self: self._srtp_parameters)
    rtcp_mux = property(lambda self: self._rtcp_mux)
    comedia = property(lambda self: self._comedia)

    async def connect(
        self,
        *,
        ip: str | None = None,
        port: int | None = None,
        rtcp_port: int | None = None,
        srtp_parameters: dict | None = None,
    ) -> None:
        """mediasoup ``plainTransport.connect({ip, port, rtcpPort, srtpParameters})``.

        Without comedia ``ip``/``port`` are the remote's (``rtcp_port`` too without rtcp-mux);
        with comedia they are ignored. ``srtp_parameters`` ``{cryptoSuite, keyBase64}`` (the
        remote's keying) is required exactly when SRTP is enabled; afterwards
        ``srtp_parameters`` here holds ours in the remote's suite. Raises ``TypeError`` naming a
        bad field, ``InvalidStateError`` on a second call or when closed.
        """
        data = {k: v for k, v in (("ip", ip), ("port", port), ("rtcpPort", rtcp_port), ("srtpParameters", srtp_parameters)) if v is not None}
        result = await self._request("transport.connect", data)
        self._tuple = result["tuple"]
        self._rtcp_tuple = result.get("rtcpTuple")
        self._srtp_parameters = result.get("srtpParameters")

    def _on_notification(self, event: str, data: Any) -> None:
        if event == "tuple":
            self._tuple = data
        elif event == "rtcptuple":
            self._rtcp_tuple = data
        elif event == "sctpstatechange":  # data channels (issue 7)
            self._sctp_state = data
        elif event == "routerclose":
            self._router_closed()
            return
        else:
            return
        self.emit(event, data)
        self._observer.emit(event, data)


class DirectTransport(Transport):
    """mediasoup ``DirectTransport``: RTP/RTCP injected and extracted by Python code, in the
    driver (``producer.send(bytes)``, consumer ``rtp`` event, ``send_rtcp``, ``rtcp`` event) or
    in the actor (a :class:`~raysfu.actors.direct_transport.DirectTransportHandler`). Events:
    ``routerclose``, ``rtcp(bytes)`` (RTCP the router sends to the remote; only without a
    handler); observer: ``close``, ``newproducer``, ``newconsumer``."""

    _type = "direct"

    def __init__(self, channel: _Channel, router: "Router", info: dict, app_data: Any) -> None:
        super().__init__(channel, router, info, app_data)
        self._max_message_size = info["maxMessageSize"]
        self._has_handler = bool(info.get("hasHandler"))

    max_message_size = property(lambda self: self._max_message_size)

    async def connect(self) -> None:
        """mediasoup ``directTransport.connect()``: nothing to do."""
        self._check_open()

    def send_rtcp(self, rtcp_packet: bytes) -> None:
        """mediasoup ``directTransport.sendRtcp(rtcpPacket)``: RTCP (e.g. a PLI or an RR for a
        consumer's SSRC) handled as if the remote had sent it. Fire-and-forget. Raises
        ``TypeError`` (not bytes), ``InvalidStateError`` (closed)."""
        self._check_open()
        if not isinstance(rtcp_packet, (bytes, bytearray, memoryview)):
            raise TypeError("rtcp_packet must be bytes")
        for producer in self._producers.values():  # keep order with injected RTP
            producer._flush_send()
        self._channel.notify("transport.sendRtcp", self._id, {"packet": bytes(rtcp_packet)})

    async def call_handler(self, name: str, *args: Any) -> Any:
        """Run ``handler.<name>(*args)`` inside the actor (awaited when a coroutine) and return
        its result (it must pickle). Raises ``InvalidStateError`` without a handler,
        ``TypeError`` for a private or missing method; the method's own errors propagate."""
        for producer in self._producers.values():
            producer._flush_send()
        return await self._request("transport.callHandler", {"name": name, "args": list(args)})

    async def set_max_incoming_bitrate(self, bitrate: int) -> None:
        raise UnsupportedError("set_max_incoming_bitrate: not implemented in DirectTransport (as mediasoup)")

    async def set_max_outgoing_bitrate(self, bitrate: int) -> None:
        raise UnsupportedError("set_max_outgoing_bitrate: not implemented in DirectTransport (as mediasoup)")

    async def set_min_outgoing_bitrate(self, bitrate: int) -> None:
        raise UnsupportedError("set_min_outgoing_bitrate: not implemented in DirectTransport (as mediasoup)")

    def _on_notification(self, event: str, data: Any) -> None:
        if event == "rtcp":
            self.emit("rtcp", data)
        elif event == "routerclose":
            self._router_closed()
# --- end PlainTransport / DirectTransport handles ------------------------------------------------


# --- rtp observers (issue 7) ---------------------------------------------------------------------
class RtpObserver(_Handle):
    """mediasoup ``RtpObserver`` (base of :class:`AudioLevelObserver` and
    :class:`ActiveSpeakerObserver`). Events: ``routerclose``; observer: ``close``, ``pause``,
    ``resume``, ``addproducer(producer)``, ``removeproducer(producer)``.

    ``producer`` in events is the :class:`Producer` handle when it was made in this process, else
    None (the entries of ``volumes``/``dominantspeaker`` also carry ``producerId``)."""

    _kind = "rtp observer"

    def __init__(self, channel: _Channel, router: "Router", info: dict, app_data: Any) -> None:
        super().__init__(channel, info["id"], app_data)
        self._router = router
        self._type = info["type"]
        self._paused = False
        router._observer.on("close", self._router_closed)

    type = property(lambda self: self._type, doc="'audiolevel' or 'activespeaker'")
    paused = property(lambda self: self._paused)

    def _producer(self, producer_id: str) -> Producer | None:
        handle = self._channel.handles.get(producer_id)
        return handle if isinstance(handle, Producer) else None

    def _forget_router(self) -> None:
        try:
            self._router._observer.remove_listener("close", self._router_closed)
        except KeyError:
            pass

    def close(self) -> None:
        """Close the observer (fire-and-forget; emits observer ``close``)."""
        if self._closed:
            return
        self._channel.notify("rtpObserver.close", self._id)
        self._forget_router()
        self._mark_closed(None)

    def _router_closed(self) -> None:
        self._mark_closed("routerclose")

    async def pause(self) -> None:
        """Stop observing (an audio-level observer emits ``silence`` unless silent already)."""
        await self._request("rtpObserver.pause")
        was = self._paused
        self._paused = True
        if not was:
            self._observer.emit("pause")

    async def resume(self) -> None:
        await self._request("rtpObserver.resume")
        was = self._paused
        self._paused = False
        if was:
            self._observer.emit("resume")

    async def add_producer(self, *, producer_id: str) -> None:
        """mediasoup ``addProducer({producerId})``: observe an audio producer of this router.
        Raises TypeError (not a str; a video producer), ValueError (no such producer in the
        router; already added to an active-speaker observer)."""
        if not isinstance(producer_id, str) or not producer_id:
            raise TypeError("producer_id must be a non-empty str")
        await self._request("rtpObserver.addProducer", {"producerId": producer_id})
        self._observer.emit("addproducer", self._producer(producer_id))

    async def remove_producer(self, *, producer_id: str) -> None:
        """mediasoup ``removeProducer({producerId})``; ValueError when the router has no such
        producer, a no-op when it is not observed."""
        if not isinstance(producer_id, str) or not producer_id:
            raise TypeError("producer_id must be a non-empty str")
        await self._request("rtpObserver.removeProducer", {"producerId": producer_id})
        self._observer.emit("removeproducer", self._producer(producer_id))

    async def dump(self) -> dict:
        """Worker-side state: ``{"id", "type", "paused", "producerIds", "interval", ...}``
        (raysfu addition; mediasoup has no RtpObserver dump)."""
        return await self._request("rtpObserver.dump")


class AudioLevelObserver(RtpObserver):
    """mediasoup ``AudioLevelObserver``. Events (also on ``observer``): ``volumes(volumes)`` with
    ``volumes = [{"producer": Producer | None, "producerId": str, "volume": int dBov}, ...]``,
    loudest first, every ``interval`` while someone is above ``threshold``; ``silence()`` once when
    nobody is. Plus the :class:`RtpObserver` events."""

    def _on_notification(self, event: str, data: Any) -> None:
        if event == "volumes":
            volumes = [{"producer": self._producer(v["producerId"]), "producerId": v["producerId"], "volume": v["volume"]} for v in data]
            self.emit("volumes", volumes)
            self._observer.emit("volumes", volumes)
        elif event == "silence":
            self.emit("silence")
            self._observer.emit("silence")


class ActiveSpeakerObserver(RtpObserver):
    """mediasoup ``ActiveSpeakerObserver``. Event (also on ``observer``):
    ``dominantspeaker({"producer": Producer | None, "producerId": str})`` when the dominant speaker
    changes. Plus the :class:`RtpObserver` events."""

    def _on_notification(self, event: str, data: Any) -> None:
        if event == "dominantspeaker":
            info = {"producer": self._producer(data["producerId"]), "producerId": data["producerId"]}
            self.emit("dominantspeaker", info)
            self._observer.emit("dominantspeaker", info)
# --- end rtp observers ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
class Router(_Handle):
    """mediasoup ``Router``. Events: ``workerclose``; observer: ``close``, ``newtransport``."""

    _kind = "router"

    def __init__(self, channel: _Channel, worker: "Worker", info: dict, app_data: Any) -> None:
        super().__init__(channel, info["id"], app_data)
        self._worker = worker
        self._rtp_capabilities = info["rtpCapabilities"]
        self._transports: dict[str, Transport] = {}
        self._consumable: dict[str, dict] = {}
        self._pipe_pairs: dict[str, asyncio.Future] = {}

    @property
    def rtp_capabilities(self) -> dict:
        """The router's ``RtpCapabilities`` (mediasoup-client ``device.load({routerRtpCapabilities})``)."""
        return self._rtp_capabilities

    def close(self) -> None:
        if self._closed:
            return
        self._channel.notify("router.close", self._id)
        self._worker._routers.pop(self._id, None)
        for t in list(self._transports.values()):
            t._router_closed()
        self._transports.clear()
        self._mark_closed(None)

    def _worker_closed(self) -> None:
        if self._closed:
            return
        for t in list(self._transports.values()):
            t._router_closed()
        self._transports.clear()
        self._mark_closed("workerclose")

    async def create_webrtc_transport(
        self,
        *,
        listen_infos: list[dict] | None = None,
        listen_ips: list | None = None,
        port: int | None = None,
        webrtc_server: Any = None,
        enable_udp: bool | None = None,
        enable_tcp: bool | None = None,
        prefer_udp: bool = False,
        prefer_tcp: bool = False,
        ice_consent_timeout: int = 30,
        initial_available_outgoing_bitrate: int = 600000,
        enable_sctp: bool = False,
        num_sctp_streams: dict | None = None,
        max_sctp_message_size: int = 262144,
        sctp_send_buffer_size: int = 262144,
        app_data: Any = None,
    ) -> WebRtcTransport:
        """mediasoup ``router.createWebRtcTransport()``.

        ``listen_infos``: ``[{"protocol": "udp"|"tcp", "ip", "announcedAddress"?, "port"?,
        "portRange"?: {"min", "max"}}]``, or ``webrtc_server``: a :class:`WebRtcServer` of this
        router's worker (its ports are shared). ``enable_udp`` (default True) / ``enable_tcp``
        (default True with a server, else False: ICE-TCP passive candidates), ``prefer_udp`` /
        ``prefer_tcp`` (+1000 local preference). Raises ``TypeError`` naming a bad field,
        ``InvalidStateError`` for a closed server, ``OSError`` when no port can be bound.
        """
        self._check_open()
        if app_data is not None and not isinstance(app_data, dict):
            raise TypeError("app_data must be a dict")
        # --- webrtc server / ice-tcp (issue 7) ---
        server = webrtc_server
        if server is not None:
            if not isinstance(server, WebRtcServer):
                raise TypeError("webrtc_server must be a WebRtcServer")
            if server.closed:
                raise InvalidStateError("webrtc_server closed")
            if server._channel is not self._channel:
                raise TypeError("webrtc_server must belong to the router's worker")
            webrtc_server = server.id
        # --- end webrtc server / ice-tcp ---
        options = {
            "listenInfos": listen_infos,
            "listenIps": listen_ips,
            "port": port,
            "webRtcServer": webrtc_server,
            "enableUdp": enable_udp,
            "enableTcp": enable_tcp,
            "preferUdp": prefer_udp,
            "preferTcp": prefer_tcp,
            "iceConsentTimeout": ice_consent_timeout,
            "initialAvailableOutgoingBitrate": initial_available_outgoing_bitrate,
            "enableSctp": enable_sctp,
            "numSctpStreams": num_sctp_streams,
            "maxSctpMessageSize": max_sctp_message_size,
            "sctpSendBufferSize": sctp_send_buffer_size,
        }
        options = {k: v for k, v in options.items() if v is not None}
        info = await self._request("router.createWebRtcTransport", options)
        transport = WebRtcTransport(self._channel, self, info, app_data)
        self._transports[transport.id] = transport
        self._observer.emit("newtransport", transport)
        if server is not None:  # webrtc server (issue 7)
            server._handle_transport(transport)
        return transport

    def can_consume(self, *, producer_id: str, rtp_capabilities: dict) -> bool:
        """mediasoup ``router.canConsume()`` for producers created through this process's
        handles (their consumable parameters are known here); False otherwise or on bad caps."""
        consumable = self._consumable.get(producer_id)
        if consumable is None:
            return False
        try:
            caps = ortc.validate_rtp_capabilities(rtp_capabilities)
            return ortc.can_consume(consumable, caps)
        except (TypeError, ValueError):
            return False

    async def can_consume_remote(self, *, producer_id: str, rtp_capabilities: dict) -> bool:
        """Like :meth:`can_consume`, asked of the worker (for producers made elsewhere)."""
        return await self._request("router.canConsume", {"producerId": producer_id, "rtpCapabilities": rtp_capabilities})

    async def dump(self) -> dict:
        return await self._request("router.dump")

    @property
    def worker(self) -> "Worker":
        """The Worker handle this router lives in."""
        return self._worker

    def __reduce__(self):
        # Pickles to (worker, id, capabilities): the copy in another process talks to the same
        # router through its own channel; it knows nothing of the transports made here.
        return (_unpickle_router, (self._worker, self._id, self._rtp_capabilities, self._app_data))

    # --- create_plain_transport (issue 7) -----------------------------------------------------
    async def create_plain_transport(
        self,
        *,
        listen_info: dict | None = None,
        rtcp_listen_info: dict | None = None,
        listen_ip: Any = None,
        port: int | None = None,
        rtcp_mux: bool = True,
        comedia: bool = False,
        enable_sctp: bool = False,
        num_sctp_streams: dict | None = None,
        max_sctp_message_size: int = 262144,
        sctp_send_buffer_size: int = 262144,
        enable_srtp: bool = False,
        srtp_crypto_suite: str = "AES_CM_128_HMAC_SHA1_80",
        app_data: Any = None,
    ) -> PlainTransport:
        """mediasoup ``router.createPlainTransport()``.

        ``listen_info`` (or the deprecated ``listen_ip`` + ``port``): ``{"protocol": "udp", "ip",
        "announcedAddress"?, "port"?, "portRange"?, "flags"?: {"udpReusePort"}}``;
        ``rtcp_listen_info`` the same for RTCP when ``rtcp_mux`` is False; ``comedia`` learns the
        remote tuple from the first packet; ``enable_srtp`` with ``srtp_crypto_suite``
        (AES_CM_128_HMAC_SHA1_80 | AES_CM_128_HMAC_SHA1_32 | AEAD_AES_128_GCM | AEAD_AES_256_GCM).
        Raises ``TypeError`` naming a bad field, ``UnsupportedError`` for SCTP (later),
        ``OSError`` when nothing can be bound, ``InvalidStateError`` when closed.
        """
        self._check_open()
        if app_data is not None and not isinstance(app_data, dict):
            raise TypeError("app_data must be a dict")
        options = {
            "listenInfo": listen_info,
            "rtcpListenInfo": rtcp_listen_info,
            "listenIp": listen_ip,
            "port": port,
            "rtcpMux": rtcp_mux,
            "comedia": comedia,
            "enableSctp": enable_sctp,
            "numSctpStreams": num_sctp_streams,
            "maxSctpMessageSize": max_sctp_message_size,
            "sctpSendBufferSize": sctp_send_buffer_size,
            "enableSrtp": enable_srtp,
            "srtpCryptoSuite": srtp_crypto_suite,
        }
        info = await self._request("router.createPlainTransport", {k: v for k, v in options.items() if v is not None})
        transport = PlainTransport(self._channel, self, info, app_data)
        self._transports[transport.id] = transport
        self._observer.emit("newtransport", transport)
        return transport
    # --- end create_plain_transport -----------------------------------------------------------

    async def create_pipe_transport(
        self,
        *,
        listen_info: dict | None = None,
        listen_ip: Any = None,
        port: int | None = None,
        enable_sctp: bool = False,
        num_sctp_streams: dict | None = None,
        max_sctp_message_size: int = 268435456,
        sctp_send_buffer_size: int = 268435456,
        enable_rtx: bool = False,
        enable_srtp: bool = False,
        app_data: Any = None,
    ) -> "PipeTransport":
        """mediasoup ``router.createPipeTransport()``.

        ``listen_info``: ``{"protocol": "udp", "ip", "announcedAddress"?, "port"?, "portRange"?}``.
        Raises ``TypeError`` naming a bad field, ``UnsupportedError`` for SCTP (later),
        ``OSError`` when nothing can be bound.
        """
        self._check_open()
        if app_data is not None and not isinstance(app_data, dict):
            raise TypeError("app_data must be a dict")
        options = {
            "listenInfo": listen_info,
            "listenIp": listen_ip,
            "port": port,
            "enableSctp": enable_sctp,
            "numSctpStreams": num_sctp_streams,
            "maxSctpMessageSize": max_sctp_message_size,
            "sctpSendBufferSize": sctp_send_buffer_size,
            "enableRtx": enable_rtx,
            "enableSrtp": enable_srtp,
        }
        info = await self._request("router.createPipeTransport", {k: v for k, v in options.items() if v is not None})
        transport = PipeTransport(self._channel, self, info, app_data)
        self._transports[transport.id] = transport
        self._observer.emit("newtransport", transport)
        return transport

    async def pipe_to_router(
        self,
        *,
        router: "Router",
        producer_id: str | None = None,
        data_producer_id: str | None = None,
        listen_info: dict | None = None,
        enable_sctp: bool = True,
        num_sctp_streams: dict | None = None,
        enable_rtx: bool = False,
        enable_srtp: bool = False,
    ) -> dict:
        """mediasoup ``router.pipeToRouter()``: make ``producer_id`` of this router consumable on
        ``router`` (in another worker) through a PipeTransport pair.

        One pair per router pair is created and cached on both routers (a second call, or a call
        the other way round, reuses it). ``listen_info`` defaults to 127.0.0.1 when both workers
        run on the same node, else each side listens on its own node's IP. Pause, resume and
        close of the producer follow across the pipe. Returns ``{"pipeConsumer", "pipeProducer"}``.

        With ``data_producer_id`` instead (the pair has SCTP, ``enable_sctp`` True as in
        mediasoup), the DataProducer is piped: returns ``{"pipeDataConsumer",
        "pipeDataProducer"}``; closing one closes the other, pause/resume follow.

        Raises ``TypeError`` (bad arguments), ``ValueError`` (unknown producer, routers in the
        same worker).
        """
        self._check_open()
        # --- data channels (issue 7) ---
        if data_producer_id is not None:
            if producer_id is not None:
                raise TypeError("give producer_id or data_producer_id, not both")
            return await self._pipe_data_to_router(router, data_producer_id, listen_info, enable_sctp,
                                                   num_sctp_streams, enable_rtx, enable_srtp)
        # --- end data channels ---
        if not isinstance(producer_id, str) or not producer_id:
            raise TypeError("producer_id must be a non-empty string")
        if not isinstance(router, Router):
            raise TypeError("router must be a Router")
        if router.closed:
            raise InvalidStateError("router closed")
        if router._worker is self._worker or router._channel.actor == self._channel.actor:
            raise ValueError("router: cannot pipe between two routers of the same worker")
        local, remote = await self._pipe_pair(router, listen_info, enable_rtx, enable_srtp, enable_sctp, num_sctp_streams)
        pipe_consumer = await local.consume(producer_id=producer_id)
        try:
            pipe_producer = await remote.produce(
                id=producer_id,
                kind=pipe_consumer.kind,
                rtp_parameters=pipe_consumer.rtp_parameters,
                paused=pipe_consumer.producer_paused,
            )
        except BaseException:
            pipe_consumer.close()
            raise

        def on_pause() -> None:
            asyncio.ensure_future(_quietly(pipe_producer.pause()))

        def on_resume() -> None:
            asyncio.ensure_future(_quietly(pipe_producer.resume()))

        pipe_consumer.on("producerpause", on_pause)
        pipe_consumer.on("producerresume", on_resume)
        pipe_consumer.observer.on("close", pipe_producer.close)
        pipe_producer.observer.on("close", pipe_consumer.close)
        return {"pipeConsumer": pipe_consumer, "pipeProducer": pipe_producer}

    # --- data channels (issue 7) ---
    async def _pipe_data_to_router(self, router: "Router", data_producer_id: Any, listen_info: dict | None,
                                   enable_sctp: bool, num_sctp_streams: dict | None, enable_rtx: bool,
                                   enable_srtp: bool) -> dict:
        if not isinstance(data_producer_id, str) or not data_producer_id:
            raise TypeError("data_producer_id must be a non-empty string")
        if not isinstance(router, Router):
            raise TypeError("router must be a Router")
        if router.closed:
            raise InvalidStateError("router closed")
        if router._worker is self._worker or router._channel.actor == self._channel.actor:
            raise ValueError("router: cannot pipe between two routers of the same worker")
        if not enable_sctp:
            raise TypeError("enable_sctp must be True to pipe a data producer")
        local, remote = await self._pipe_pair(router, listen_info, enable_rtx, enable_srtp, enable_sctp, num_sctp_streams)
        pipe_data_consumer = await local.consume_data(data_producer_id=data_producer_id)
        try:
            pipe_data_producer = await remote.produce_data(
                id=data_producer_id,
                sctp_stream_parameters=pipe_data_consumer.sctp_stream_parameters,
                label=pipe_data_consumer.label,
                protocol=pipe_data_consumer.protocol,
                paused=pipe_data_consumer.data_producer_paused,
            )
        except BaseException:
            pipe_data_consumer.close()
            raise
        pipe_data_consumer.on("dataproducerpause", lambda: asyncio.ensure_future(_quietly(pipe_data_producer.pause())))
        pipe_data_consumer.on("dataproducerresume", lambda: asyncio.ensure_future(_quietly(pipe_data_producer.resume())))
        pipe_data_consumer.observer.on("close", pipe_data_producer.close)
        pipe_data_producer.observer.on("close", pipe_data_consumer.close)
        return {"pipeDataConsumer": pipe_data_consumer, "pipeDataProducer": pipe_data_producer}
    # --- end data channels ---

    async def _pipe_pair(self, router: "Router", listen_info: dict | None, enable_rtx: bool, enable_srtp: bool,
                         enable_sctp: bool = True, num_sctp_streams: dict | None = None):
        pair = self._pipe_pairs.get(router.id)
        if pair is not None:
            return await pair
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        # The far router's view of the same pair is the pair swapped: a concurrent call the other
        # way round (its producer piped to us) waits on its own future, resolved with (remote, local).
        router_future: asyncio.Future = loop.create_future()
        self._pipe_pairs[router.id] = future
        router._pipe_pairs[self.id] = router_future
        try:
            same_node = self._worker.node_id == router._worker.node_id
            local_info = listen_info or {"protocol": "udp", "ip": "127.0.0.1" if same_node else self._worker.node_ip}
            remote_info = listen_info or {"protocol": "udp", "ip": "127.0.0.1" if same_node else router._worker.node_ip}
            local, remote = await asyncio.gather(
                self.create_pipe_transport(listen_info=local_info, enable_rtx=enable_rtx, enable_srtp=enable_srtp,
                                           enable_sctp=enable_sctp, num_sctp_streams=num_sctp_streams),  # data channels (issue 7)
                router.create_pipe_transport(listen_info=remote_info, enable_rtx=enable_rtx, enable_srtp=enable_srtp,
                                             enable_sctp=enable_sctp, num_sctp_streams=num_sctp_streams),
            )
            await asyncio.gather(
                local.connect(ip=remote.tuple["localAddress"], port=remote.tuple["localPort"], srtp_parameters=remote.srtp_parameters),
                remote.connect(ip=local.tuple["localAddress"], port=local.tuple["localPort"], srtp_parameters=local.srtp_parameters),
            )
        except BaseException as exc:
            self._pipe_pairs.pop(router.id, None)
            router._pipe_pairs.pop(self.id, None)
            for f in (future, router_future):
                f.set_exception(exc)
                f.exception()  # retrieved: the caller re-raises it
            raise

        def forget(*_: Any) -> None:
            self._pipe_pairs.pop(router.id, None)
            router._pipe_pairs.pop(self.id, None)
            # A pipe whose far end is gone (closed, or its worker died) is closed, not left
            # sending into the void: closing one side closes the other.
            local.close()
            remote.close()

        local.observer.on("close", forget)
        remote.observer.on("close", forget)
        future.set_result((local, remote))
        router_future.set_result((remote, local))
        return local, remote

    # --- create_direct_transport (issue 7) ----------------------------------------------------
    async def create_direct_transport(
        self,
        *,
        max_message_size: int = 262144,
        handler: Any = None,
        app_data: Any = None,
    ) -> DirectTransport:
        """mediasoup ``router.createDirectTransport({maxMessageSize})``.

        ``handler``: a :class:`~raysfu.actors.direct_transport.DirectTransportHandler` instance
        to run in the actor (it is pickled there); None sends the packets to this process as
        events. Raises ``TypeError`` naming a bad field, ``InvalidStateError`` when closed.
        """
        from .direct_transport import DirectTransportHandler

        self._check_open()
        if not isinstance(max_message_size, int) or isinstance(max_message_size, bool) or max_message_size < 0:
            raise TypeError("max_message_size must be a non-negative int (bytes)")
        if handler is not None and not isinstance(handler, DirectTransportHandler):
            raise TypeError("handler must be a DirectTransportHandler instance")
        if app_data is not None and not isinstance(app_data, dict):
            raise TypeError("app_data must be a dict")
        options = {"maxMessageSize": max_message_size}
        if handler is not None:
            options["handler"] = handler
        info = await self._request("router.createDirectTransport", options)
        transport = DirectTransport(self._channel, self, info, app_data)
        self._transports[transport.id] = transport
        self._observer.emit("newtransport", transport)
        return transport
    # --- end create_direct_transport ----------------------------------------------------------

    # --- rtp observers (issue 7) -------------------------------------------------------------
    async def create_audio_level_observer(
        self, *, max_entries: int = 1, threshold: int = -80, interval: int = 1000, app_data: Any = None
    ) -> AudioLevelObserver:
        """mediasoup ``router.createAudioLevelObserver({maxEntries, threshold, interval, appData})``.

        ``max_entries`` 1..65535 producers per ``volumes`` event; ``threshold`` -127..0 dBov;
        ``interval`` ms (clamped to 250..5000 as the worker does). Raises TypeError (not an int,
        ``app_data`` not a dict) / ValueError (out of range), naming the field."""
        self._check_open()
        if app_data is not None and not isinstance(app_data, dict):
            raise TypeError("app_data must be a dict")
        info = await self._request("router.createAudioLevelObserver", {"maxEntries": max_entries, "threshold": threshold, "interval": interval})
        observer = AudioLevelObserver(self._channel, self, info, app_data)
        self._observer.emit("newrtpobserver", observer)
        return observer

    async def create_active_speaker_observer(self, *, interval: int = 300, app_data: Any = None) -> ActiveSpeakerObserver:
        """mediasoup ``router.createActiveSpeakerObserver({interval, appData})``; ``interval`` ms
        (clamped to 100..5000). Raises TypeError/ValueError naming the field."""
        self._check_open()
        if app_data is not None and not isinstance(app_data, dict):
            raise TypeError("app_data must be a dict")
        info = await self._request("router.createActiveSpeakerObserver", {"interval": interval})
        observer = ActiveSpeakerObserver(self._channel, self, info, app_data)
        self._observer.emit("newrtpobserver", observer)
        return observer
    # --- end rtp observers -------------------------------------------------------------------


# --- webrtc server / ice-tcp (issue 7) -----------------------------------------------------------
class WebRtcServer(_Handle):
    """mediasoup ``WebRtcServer``: UDP/TCP ports of one worker shared by many WebRtcTransports.
    Events: ``workerclose``; observer: ``close``, ``webrtctransporthandled(transport)``,
    ``webrtctransportunhandled(transport)``. ``close()`` closes its transports (they emit
    ``listenserverclose``)."""

    _kind = "webrtc_server"

    def __init__(self, channel: _Channel, worker: "Worker", info: dict, app_data: Any) -> None:
        super().__init__(channel, info["id"], app_data)
        self._worker = worker
        self._local_addresses = info.get("localAddresses", [])
        self._transports: dict[str, WebRtcTransport] = {}

    @property
    def local_addresses(self) -> list[dict]:
        """The bound sockets: ``[{"protocol", "ip", "announcedAddress", "port"}]`` (ours)."""
        return self._local_addresses

    def close(self) -> None:
        if self._closed:
            return
        self._channel.notify("webRtcServer.close", self._id)
        self._worker._webrtc_servers.pop(self._id, None)
        for t in list(self._transports.values()):
            t._listen_server_closed()
        self._transports.clear()
        self._mark_closed(None)

    def _worker_closed(self) -> None:
        if self._closed:
            return
        self._transports.clear()
        self._mark_closed("workerclose")

    async def dump(self) -> dict:
        """``{id, udpSockets: [{ip, port}], tcpServers: [{ip, port}], webRtcTransportIds,
        localIceUsernameFragments: [{localIceUsernameFragment, webRtcTransportId}],
        tupleHashes: [{tupleHash, webRtcTransportId}], droppedPackets: {reason: count}}``."""
        return await self._request("webRtcServer.dump")

    def _handle_transport(self, transport: WebRtcTransport) -> None:
        self._transports[transport.id] = transport
        self._observer.emit("webrtctransporthandled", transport)

        def unhandled() -> None:
            if self._transports.pop(transport.id, None) is not None:
                self._observer.emit("webrtctransportunhandled", transport)

        transport.observer.once("close", unhandled)

    def __repr__(self) -> str:
        return f"<WebRtcServer {self._id}{' closed' if self._closed else ''}>"
# --- end webrtc server / ice-tcp -----------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
class Worker(_Handle):
    """mediasoup ``Worker``: one WorkerActor (one CPU core). Events: ``died(error)``;
    observer: ``close``, ``newrouter``."""

    _kind = "worker"

    def __init__(self, channel: _Channel, info: dict, app_data: Any) -> None:
        super().__init__(channel, "worker-" + channel.sub_id, app_data)
        self._info = info
        self._routers: dict[str, Router] = {}
        self._webrtc_servers: dict[str, "WebRtcServer"] = {}  # webrtc server (issue 7)
        self._died = False
        channel.on_died = self._on_died
        _WORKERS[self.key] = self

    @property
    def key(self) -> str:
        """The Ray actor id (hex): the same for every handle of this worker in any process."""
        return _actor_key(self._channel.actor)

    def __reduce__(self):
        # Pickles to the actor handle and its ready() info; unpickled, it subscribes to events on
        # its first request. One handle per worker and process.
        return (_unpickle_worker, (self._channel.actor, self._info, self._app_data))

    def router_handle(self, router_id: str, rtp_capabilities: dict, app_data: Any = None) -> "Router":
        """A handle for router ``router_id`` of this worker made elsewhere (another process or
        handle), given its ``rtpCapabilities``; the existing handle when this process has one."""
        router = self._routers.get(router_id)
        if router is None or router.closed:
            router = Router(self._channel, self, {"id": router_id, "rtpCapabilities": rtp_capabilities}, app_data)
            self._routers[router_id] = router
        return router

    @property
    def pid(self) -> int:
        return self._info["pid"]

    @property
    def node_id(self) -> str:
        """Ray node id of the node the actor runs on."""
        return self._info["nodeId"]

    @property
    def node_ip(self) -> str:
        return self._info["nodeIp"]

    @property
    def died(self) -> bool:
        return self._died

    @property
    def actor(self) -> Any:
        """The Ray actor handle (for placement and tests)."""
        return self._channel.actor

    async def create_router(self, *, media_codecs: list[dict] | None = None, app_data: Any = None) -> Router:
        """mediasoup ``worker.createRouter({mediaCodecs})``.

        ``media_codecs``: ``[{"kind", "mimeType", "clockRate", "channels"?, "parameters"?,
        "preferredPayloadType"?}]``. Raises ``TypeError`` naming a bad field,
        ``UnsupportedError`` for a codec raysfu cannot route.
        """
        self._check_open()
        if app_data is not None and not isinstance(app_data, dict):
            raise TypeError("app_data must be a dict")
        if media_codecs is not None and not isinstance(media_codecs, list):
            raise TypeError("media_codecs must be a list")
        info = await self._channel.request("worker.createRouter", None, {"mediaCodecs": media_codecs or []})
        router = Router(self._channel, self, info, app_data)
        self._routers[router.id] = router
        self._observer.emit("newrouter", router)
        return router

    async def dump(self) -> dict:
        """mediasoup ``WorkerDump``: ``{pid, webRtcServerIds, routerIds, channelMessageHandlers}``."""
        self._check_open()
        return await self._channel.request("worker.dump")

    async def get_resource_usage(self) -> dict:
        """getrusage of the actor process (``ru_utime``/``ru_stime`` in ms, ``ru_maxrss`` KiB)."""
        self._check_open()
        return await self._channel.request("worker.getResourceUsage")

    async def get_load(self) -> dict:
        """Load since the previous call: ``{"cpuShare" (0..1 of a core), "packetsInPerSecond",
        "packetsOutPerSecond", "routers", "transports", "producers", "consumers"}``."""
        self._check_open()
        return await self._channel.request("worker.getLoad")

    # --- webrtc server / ice-tcp (issue 7) ---
    async def create_webrtc_server(self, *, listen_infos: list[dict], app_data: Any = None) -> "WebRtcServer":
        """mediasoup ``worker.createWebRtcServer({listenInfos, appData})``: one UDP socket or TCP
        listener per listen info (``{"protocol": "udp"|"tcp", "ip", "announcedAddress"?,
        "port"?, "portRange"?}``), shared by the WebRtcTransports created with
        ``webrtc_server=``. Raises ``TypeError`` naming a bad field, ``OSError`` when a port
        cannot be bound, ``InvalidStateError`` when the worker is closed."""
        self._check_open()
        if app_data is not None and not isinstance(app_data, dict):
            raise TypeError("app_data must be a dict")
        if not isinstance(listen_infos, list) or not listen_infos:
            raise TypeError("listen_infos must be a non-empty list")
        info = await self._channel.request("worker.createWebRtcServer", None, {"listenInfos": copy.deepcopy(listen_infos)})
        server = WebRtcServer(self._channel, self, info, app_data)
        self._webrtc_servers[server.id] = server
        self._observer.emit("newwebrtcserver", server)
        return server

    def _close_webrtc_servers(self) -> None:
        for server in list(self._webrtc_servers.values()):
            server._worker_closed()
        self._webrtc_servers.clear()
    # --- end webrtc server / ice-tcp ---

    async def update_settings(self, *, log_level: str | None = None, log_tags: list[str] | None = None) -> None:
        self._check_open()
        data = {k: v for k, v in (("log_level", log_level), ("log_tags", log_tags)) if v is not None}
        validate_worker_settings(data)
        await self._channel.request("worker.updateSettings", None, data)

    def close(self) -> None:
        """Close every router and stop the actor (mediasoup ``worker.close()``)."""
        if self._closed:
            return
        import ray

        self._channel.notify("worker.close")
        actor = self._channel.actor
        self._channel.close()
        for r in list(self._routers.values()):
            r._worker_closed()
        self._routers.clear()
        self._close_webrtc_servers()  # webrtc server (issue 7)
        self._mark_closed(None)
        try:
            loop = asyncio.get_running_loop()
            loop.call_later(0.2, ray.kill, actor)
        except RuntimeError:
            ray.kill(actor)

    def _on_died(self, error: BaseException) -> None:
        if self._closed:
            return
        self._died = True
        self._channel.close()
        for r in list(self._routers.values()):
            r._worker_closed()
        self._routers.clear()
        self._close_webrtc_servers()  # webrtc server (issue 7)
        self._closed = True
        self._channel.handles.pop(self._id, None)
        self.emit("died", error)
        self._observer.emit("close")


# ---------------------------------------------------------------------------------------------
#: Worker handles of this process by Ray actor id: unpickling or attaching reuses them.
_WORKERS: dict[str, Worker] = {}


def _actor_key(actor: Any) -> str:
    return actor._actor_id.hex()


def _unpickle_worker(actor: Any, info: dict, app_data: Any) -> Worker:
    worker = _WORKERS.get(_actor_key(actor))
    if worker is None or worker.closed:
        worker = Worker(_Channel(actor), info, app_data)
    return worker


def _unpickle_router(worker: Worker, router_id: str, rtp_capabilities: dict, app_data: Any) -> Router:
    return worker.router_handle(router_id, rtp_capabilities, app_data)


async def attach_worker(actor: Any) -> Worker:
    """A Worker handle for a WorkerActor started elsewhere (another process, a registry), given
    its Ray actor handle; the existing handle when this process has one. Raises
    ``InvalidStateError`` when the actor is dead."""
    import ray.exceptions

    worker = _WORKERS.get(_actor_key(actor))
    if worker is not None and not worker.closed:
        return worker
    try:
        info = await actor.ready.remote()
    except ray.exceptions.RayActorError as exc:
        raise InvalidStateError(f"worker died: {exc}") from exc
    channel = _Channel(actor)
    worker = Worker(channel, info, None)
    await channel.start()
    return worker


_REMOTE_WORKER_CLASS = None


def _remote_worker_class():
    global _REMOTE_WORKER_CLASS
    if _REMOTE_WORKER_CLASS is None:
        import ray

        _REMOTE_WORKER_CLASS = ray.remote(WorkerActor)
    return _REMOTE_WORKER_CLASS


def ensure_ray(**init_kwargs: Any) -> None:
    """``ray.init()`` unless Ray is already initialised: joins the cluster named by
    ``RAY_ADDRESS`` when set, otherwise starts an embedded local Ray whose worker processes run
    at nice 0 (``RAY_worker_niceness``, unless set; Ray's default is 15). For ``ray start``
    clusters put ``RAY_worker_niceness=0`` in the nodes' environment (cluster.yaml does)."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], **init_kwargs)
    else:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # Ray starts worker processes at nice 15 (raylet worker_niceness): media workers then
        # lose the CPU to any ordinary process on a busy host (measured: 18–83 % of a core in
        # benchmarks/RESULTS.md, "One worker vs two workers"). Media forwarding runs at nice 0.
        os.environ.setdefault("RAY_worker_niceness", "0")
        kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        kwargs.update(init_kwargs)
        ray.init(**kwargs)


async def create_worker(
    *,
    log_level: str = "error",
    log_tags: list[str] | None = None,
    rtc_min_port: int = 10000,
    rtc_max_port: int = 59999,
    dtls_certificate_file: str | None = None,
    dtls_private_key_file: str | None = None,
    app_data: Any = None,
    ray_options: dict | None = None,
) -> Worker:
    """Start one WorkerActor (a Ray async actor with ``num_cpus=1``) and return its handle.

    mediasoup ``createWorker(settings)``. ``ray_options`` go to ``ActorClass.options()``
    (e.g. ``scheduling_strategy`` to pin a node). Raises ``TypeError`` for bad settings.
    """
    settings = validate_worker_settings(
        {
            "log_level": log_level,
            "log_tags": log_tags or [],
            "rtc_min_port": rtc_min_port,
            "rtc_max_port": rtc_max_port,
            "dtls_certificate_file": dtls_certificate_file,
            "dtls_private_key_file": dtls_private_key_file,
        }
    )
    settings = {k: v for k, v in settings.items() if v is not None}
    if app_data is not None and not isinstance(app_data, dict):
        raise TypeError("app_data must be a dict")
    ensure_ray()
    options = {"num_cpus": 1, "max_concurrency": 1000}
    options.update(ray_options or {})
    actor = _remote_worker_class().options(**options).remote(settings)
    info = await actor.ready.remote()
    channel = _Channel(actor)
    await channel.start()
    return Worker(channel, info, app_data)


def _placement_nodes(node_ids: list[str] | None, node_labels: dict[str, str] | None) -> list[tuple[str, int]]:
    """Alive Ray nodes as ``[(node_id, cpus)]``, filtered by id and by labels (all must match)."""
    import ray

    nodes = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        node_id = node["NodeID"]
        if node_ids is not None and node_id not in node_ids:
            continue
        labels = node.get("Labels") or {}
        if node_labels and any(labels.get(k) != v for k, v in node_labels.items()):
            continue
        cpus = int(node.get("Resources", {}).get("CPU", 0))
        if cpus > 0:
            nodes.append((node_id, cpus))
    return nodes


async def create_workers(
    num_workers: int | None = None,
    *,
    node_ids: list[str] | None = None,
    node_labels: dict[str, str] | None = None,
    **settings: Any,
) -> list[Worker]:
    """Start WorkerActors across the Ray cluster, each pinned to a node (NodeAffinity, hard).

    - ``num_workers`` None: one per CPU of every chosen node; an int: that many, spread over the
      chosen nodes in turn, as far as their CPUs go.
    - ``node_ids``: only these Ray node ids; ``node_labels``: only nodes whose labels include
      all these key/value pairs (e.g. ``{"sfu-role": "media"}``).
    Other keyword arguments are :func:`create_worker`'s settings. Raises ``TypeError`` for bad
    arguments, ``ValueError`` when no chosen node has a CPU or ``num_workers`` exceeds them.
    """
    if num_workers is not None and (not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1):
        raise TypeError("num_workers must be a positive int or None")
    if node_ids is not None and (not isinstance(node_ids, list) or not all(isinstance(n, str) for n in node_ids)):
        raise TypeError("node_ids must be a list of Ray node id strings")
    if node_labels is not None and not isinstance(node_labels, dict):
        raise TypeError("node_labels must be a dict")
    ensure_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = _placement_nodes(node_ids, node_labels)
    if not nodes:
        raise ValueError("no alive Ray node with a CPU matches node_ids/node_labels")
    slots: list[str] = []
    for turn in range(max(c for _, c in nodes)):  # round-robin: node A, node B, A, B, ...
        slots.extend(node_id for node_id, cpus in nodes if turn < cpus)
    if num_workers is None:
        num_workers = len(slots)
    if num_workers > len(slots):
        raise ValueError(f"num_workers={num_workers} exceeds the {len(slots)} CPUs of the chosen nodes")
    base_options = dict(settings.pop("ray_options", None) or {})
    return list(
        await asyncio.gather(
            *(
                create_worker(ray_options={**base_options, "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}, **settings)
                for node_id in slots[:num_workers]
            )
        )
    )
