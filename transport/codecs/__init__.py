"""Video codec payload descriptors for layer selection and rewriting in consumers.

- :mod:`.vp8`: VP8 payload descriptor (RFC 7741), temporal filter, picture id / TL0PICIDX
  rewriter (:class:`VP8Rewriter`, mediasoup VP8 ``EncodingContext``).
- :mod:`.vp9`: VP9 payload descriptor with scalability structure (RFC 9628), SVC / K-SVC
  layer filter (:class:`VP9LayerFilter`, mediasoup VP9 ``EncodingContext``).
- :mod:`.av1_dd`: the dependency descriptor header extension (AV1 RTP spec Appendix A).

Parsers take ``(data, start, end)`` over the shared packet and return plain tuples (index
constants in each module); they raise only :class:`~raysfu.transport.errors.PacketParseError`
on malformed input. Keyframe detection alone lives in :mod:`raysfu.transport.rtp`.
"""

from raysfu.transport.codecs.av1_dd import DependencyStructure, parse_dependency_descriptor
from raysfu.transport.codecs.vp8 import PictureIdMap, VP8Rewriter, parse_vp8_descriptor, should_forward
from raysfu.transport.codecs.vp9 import VP9LayerFilter, parse_vp9_descriptor

__all__ = [
    "DependencyStructure",
    "parse_dependency_descriptor",
    "PictureIdMap",
    "VP8Rewriter",
    "parse_vp8_descriptor",
    "should_forward",
    "VP9LayerFilter",
    "parse_vp9_descriptor",
]
