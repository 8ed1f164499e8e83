"""The raysfu demo room: an aiohttp signaling server plus a browser page built on mediasoup-client.

Run it with ``python -m raysfu.demo`` (or ``make demo``) and open http://127.0.0.1:8080/?room=demo&peer=alice.
:func:`raysfu.demo.server.create_app` builds the aiohttp application for in-process use (tests).
"""

from .server import MEDIA_CODECS, Peer, Room, create_app, serve

__all__ = ["MEDIA_CODECS", "Peer", "Room", "create_app", "serve"]
