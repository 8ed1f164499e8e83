"""raysfu: a WebRTC SFU in Python, mediasoup v3's object model and JSON, distributed with Ray.

The code lives in three subpackages: :mod:`raysfu.transport` (sans-I/O protocol machinery),
:mod:`raysfu.bwe` (sans-I/O bandwidth estimation) and :mod:`raysfu.actors` (the media graph,
the Ray WorkerActor and the public API). See DESIGN.md in the shared folder.
"""

__version__ = "0.1.0"
