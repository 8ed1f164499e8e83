"""The media graph, the Ray WorkerActor and the public API (mediasoup v3's object model).

```python
from raysfu.actors import create_worker
worker = await create_worker()
router = await worker.create_router(media_codecs=[...])
```
"""

from raysfu.transport.errors import InvalidStateError, SfuError, UnsupportedError

from .api import (
    ActiveSpeakerObserver,
    AudioLevelObserver,
    Consumer,
    DataConsumer,
    DataProducer,
    DirectTransport,
    PipeTransport,
    PlainTransport,
    Producer,
    Router,
    WebRtcServer,
    WebRtcTransport,
    Worker,
    attach_worker,
    create_worker,
    create_workers,
    ensure_ray,
)
from .direct_transport import DirectContext, DirectTransportHandler  # issue 7
from .room import Room, RoomManager, RoomRegistry, get_registry

__all__ = [
    "ActiveSpeakerObserver",
    "AudioLevelObserver",
    "Consumer",
    "DataConsumer",
    "DataProducer",
    "DirectContext",
    "DirectTransport",
    "DirectTransportHandler",
    "PlainTransport",
    "PipeTransport",
    "InvalidStateError",
    "Producer",
    "Room",
    "WebRtcServer",
    "RoomManager",
    "RoomRegistry",
    "Router",
    "SfuError",
    "UnsupportedError",
    "WebRtcTransport",
    "Worker",
    "attach_worker",
    "create_worker",
    "get_registry",
    "create_workers",
    "ensure_ray",
]
