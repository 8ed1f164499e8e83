"""The media graph, the Ray WorkerActor and the public API (mediasoup v3's object model).

```python
from raysfu.actors import create_worker
worker = await create_worker()
router = await worker.create_router(media_codecs=[...])
```
"""

from raysfu.transport.errors import InvalidStateError, SfuError, UnsupportedError

from .api import (
    Consumer,
    PipeTransport,
    Producer,
    Router,
    WebRtcTransport,
    Worker,
    create_worker,
    create_workers,
    ensure_ray,
)

__all__ = [
    "Consumer",
    "PipeTransport",
    "InvalidStateError",
    "Producer",
    "Router",
    "SfuError",
    "UnsupportedError",
    "WebRtcTransport",
    "Worker",
    "create_worker",
    "create_workers",
    "ensure_ray",
]
