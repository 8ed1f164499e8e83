"""ORTC negotiation: mediasoup v3's ``ortc.ts`` rules as pure functions over its JSON.

Every parameter object is a plain dict in mediasoup's camelCase JSON, exactly what
mediasoup-client sends and expects:

- ``RtpCapabilities``: ``{"codecs": [RtpCodecCapability], "headerExtensions": [RtpHeaderExtension]}``
  - ``RtpCodecCapability``: ``{kind, mimeType, preferredPayloadType?, clockRate, channels?
    (audio only), parameters: {str: str|int|float}, rtcpFeedback: [{type, parameter}]}``
  - ``RtpHeaderExtension``: ``{kind, uri, preferredId, preferredEncrypt, direction}``
- ``RtpParameters``: ``{mid?, codecs: [RtpCodecParameters], headerExtensions: [{uri, id,
  encrypt, parameters}], encodings: [RtpEncodingParameters], rtcp: {cname?, reducedSize}}``
  - ``RtpCodecParameters``: ``{mimeType, payloadType, clockRate, channels?, parameters,
    rtcpFeedback}``
  - ``RtpEncodingParameters``: ``{ssrc?, rid?, codecPayloadType?, rtx?: {ssrc}, dtx,
    scalabilityMode?, scaleResolutionDownBy?, maxBitrate?, ...}``
- ``RtpMapping``: ``{"codecs": [{payloadType, mappedPayloadType}], "encodings": [{ssrc?, rid?,
  scalabilityMode?, mappedSsrc}]}``
- ``SctpStreamParameters``: ``{streamId, ordered, maxPacketLifeTime?, maxRetransmits?}``

No function mutates its arguments (inputs are deep-copied; results are new dicts), except
:func:`match_codecs` with ``modify=True``, whose purpose is to rewrite ``a``'s H264
``profile-level-id``. Unknown keys are kept, as mediasoup keeps them.

Errors: ``TypeError`` for a field of the wrong type or a structural rule broken, ``ValueError``
for a value out of range, both with a message naming the field (``"rtpParameters.codecs[0]
.payloadType must be an int"``); :class:`~raysfu.transport.errors.UnsupportedError` when the
router cannot serve a codec / the remote cannot receive any.

The produce path of a transport is::

    rtp_parameters, rtp_mapping, consumable, producer_type = prepare_producer_rtp_parameters(
        kind, client_rtp_parameters, router_rtp_capabilities, cname=transport_cname)

(:func:`validate_producer_rtp_parameters` → :func:`get_producer_rtp_parameters_mapping` →
:func:`get_consumable_rtp_parameters` → :func:`get_producer_type`), and the consume path is
``validate_rtp_capabilities`` → :func:`get_consumer_rtp_parameters` (then the transport sets
``mid``) or :func:`get_pipe_consumer_rtp_parameters` for a PipeTransport.

Sources: mediasoup ``node/src/ortc.ts``, ``Transport.ts`` (produce/consume),
``worker/src/RTC/RtpDictionaries/*.cpp`` and ``Producer.cpp`` (the worker-side checks),
``scalabilityModes.ts``; RFC 4588 (RTX ``apt``), RFC 6184 (H264), RFC 8851/8852 (rid).
"""

from __future__ import annotations

import copy
import random
import re
import uuid
from typing import Any, Callable

from . import h264_profile_level_id as h264
from .errors import UnsupportedError
from .supported_rtp_capabilities import (
    SUPPORTED_RTP_CAPABILITIES,
    URI_ABS_SEND_TIME,
    URI_MID,
    URI_TRANSPORT_WIDE_CC_01,
)

__all__ = [
    "DYNAMIC_PAYLOAD_TYPES",
    "SIMULCAST_MIME_TYPES",
    "SVC_MIME_TYPES",
    "generate_router_rtp_capabilities",
    "validate_rtp_capabilities",
    "validate_rtp_parameters",
    "validate_producer_rtp_parameters",
    "validate_sctp_stream_parameters",
    "get_producer_rtp_parameters_mapping",
    "get_consumable_rtp_parameters",
    "get_producer_type",
    "prepare_producer_rtp_parameters",
    "can_consume",
    "get_consumer_rtp_parameters",
    "get_pipe_consumer_rtp_parameters",
    "match_codecs",
    "parse_scalability_mode",
    "generate_random_ssrc",
    "generate_random_cname",
    "get_supported_rtp_capabilities",
    "is_rtx_codec",
    "get_kind",
]

#: Payload types the router hands out, in order (mediasoup ``DynamicPayloadTypes``).
DYNAMIC_PAYLOAD_TYPES: tuple[int, ...] = tuple(range(100, 128)) + (96, 97, 98, 99)

#: Lower-case mimeTypes that a Producer may send as simulcast (several encodings, or one
#: encoding with temporal layers only); mediasoup ``Codecs::Tools::IsValidTypeForCodec``, + AV1.
SIMULCAST_MIME_TYPES = frozenset({"video/vp8", "video/h264", "video/av1"})
#: Lower-case mimeTypes that a Producer may send as SVC (one encoding with layers).
SVC_MIME_TYPES = frozenset({"video/vp9", "video/h264-svc", "video/av1"})

_MIME_TYPE_RE = re.compile(r"^(audio|video)/(.+)", re.IGNORECASE)
_RTX_RE = re.compile(r".+/rtx$", re.IGNORECASE)
_SCALABILITY_MODE_RE = re.compile(r"^[LS]([1-9]\d?)T([1-9]\d?)(_KEY)?")
_EXT_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
_MAX_UINT32 = 0xFFFFFFFF
_CAPABILITY_KEY_ORDER = ("kind", "mimeType", "preferredPayloadType", "clockRate", "channels",
                         "parameters", "rtcpFeedback")

RandomSsrc = Callable[[], int]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def generate_random_ssrc() -> int:
    """A random SSRC in ``[100000000, 999999999)``, as mediasoup ``utils.generateRandomNumber``."""
    return random.randrange(100_000_000, 999_999_999)


def generate_random_cname() -> str:
    """A random 8-character CNAME (the head of a UUIDv4), as mediasoup's Transport does."""
    return str(uuid.uuid4())[:8]


def get_supported_rtp_capabilities() -> dict[str, Any]:
    """Normalised deep copy of what raysfu can route (see ``supported_rtp_capabilities``):
    ``{"codecs": [...], "headerExtensions": [...]}`` with every default filled in."""
    return validate_rtp_capabilities(SUPPORTED_RTP_CAPABILITIES)


def is_rtx_codec(codec: dict[str, Any]) -> bool:
    """True if ``codec["mimeType"]`` is ``<kind>/rtx`` (case-insensitive); RFC 4588."""
    mime_type = codec.get("mimeType")
    return isinstance(mime_type, str) and _RTX_RE.search(mime_type) is not None


def get_kind(mime_type: str) -> str:
    """``"audio"`` or ``"video"`` from a mimeType such as ``"video/VP8"``.

    Raises ``TypeError`` if not a string, ``ValueError`` if it is not ``audio/...``/``video/...``.
    """
    if not isinstance(mime_type, str):
        raise TypeError(f"mimeType must be a string, got {type(mime_type).__name__}")
    match = _MIME_TYPE_RE.match(mime_type)
    if match is None:
        raise ValueError(f"mimeType must be 'audio/<subtype>' or 'video/<subtype>', got {mime_type!r}")
    return match.group(1).lower()


def parse_scalability_mode(mode: str | None) -> dict[str, Any]:
    """Parse a W3C scalabilityMode (``"L1T3"``, ``"L3T3_KEY"``, ``"S2T1"``) into
    ``{"spatialLayers": int, "temporalLayers": int, "ksvc": bool}``.

    Layer counts are 1..99 (mediasoup ``scalabilityModes.ts``: ``^[LS]([1-9]\\d?)T([1-9]\\d?)(_KEY)?``);
    anything else, ``None`` included, gives ``1/1/False``.
    """
    match = _SCALABILITY_MODE_RE.match(mode) if isinstance(mode, str) else None
    if match is None:
        return {"spatialLayers": 1, "temporalLayers": 1, "ksvc": False}
    return {
        "spatialLayers": int(match.group(1)),
        "temporalLayers": int(match.group(2)),
        "ksvc": match.group(3) is not None,
    }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value: Any) -> Any:
    """Numeric strings as ints, so ``"1"`` and ``1`` compare equal in fmtp parameters."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _params(codec: dict[str, Any]) -> dict[str, Any]:
    return codec.get("parameters") or {}


# --------------------------------------------------------------------------------------------
# Validation (in place on private copies; the public functions copy first)
# --------------------------------------------------------------------------------------------


def _check_dict(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"{path} must be a dict, got {type(value).__name__}")


def _check_list(value: Any, path: str) -> None:
    if not isinstance(value, list):
        raise TypeError(f"{path} must be a list, got {type(value).__name__}")


def _check_int(value: Any, path: str, low: int, high: int) -> None:
    if not _is_int(value):
        raise TypeError(f"{path} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{path} must be in {low}..{high}, got {value}")


def _check_str(value: Any, path: str) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{path} must be a non-empty string, got {value!r}")


def _drop_none(obj: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if key in obj and obj[key] is None:
            del obj[key]


def _validate_parameters(params: dict[str, Any], path: str, *, codec: bool) -> None:
    for key, value in params.items():
        if not isinstance(key, str):
            raise TypeError(f"{path} keys must be strings, got {key!r}")
        if value is None:
            params[key] = value = ""
        if not isinstance(value, str) and not _is_number(value):
            raise TypeError(f"{path}[{key!r}] must be a string or a number, got {value!r}")
        if codec and key == "apt" and not _is_int(value):
            raise TypeError(f"{path}.apt must be an int, got {value!r}")


def _validate_rtcp_feedback(fb: Any, path: str) -> None:
    _check_dict(fb, path)
    _check_str(fb.get("type"), f"{path}.type")
    parameter = fb.get("parameter")
    if parameter is None:
        fb["parameter"] = ""
    elif not isinstance(parameter, str):
        raise TypeError(f"{path}.parameter must be a string, got {parameter!r}")


def _validate_codec(codec: Any, path: str, *, capability: bool) -> None:
    """mediasoup ``validateRtpCodecCapability`` / ``validateRtpCodecParameters``."""
    _check_dict(codec, path)
    mime_type = codec.get("mimeType")
    _check_str(mime_type, f"{path}.mimeType")
    match = _MIME_TYPE_RE.match(mime_type)
    if match is None:
        raise ValueError(f"{path}.mimeType must be 'audio/<subtype>' or 'video/<subtype>', got {mime_type!r}")
    kind = match.group(1).lower()
    if capability:
        codec["kind"] = kind  # mediasoup overrides kind with the mimeType's type
        _drop_none(codec, "preferredPayloadType")
        if "preferredPayloadType" in codec:
            _check_int(codec["preferredPayloadType"], f"{path}.preferredPayloadType", 0, 127)
    else:
        _check_int(codec.get("payloadType"), f"{path}.payloadType", 0, 127)
    clock_rate = codec.get("clockRate")
    if not _is_int(clock_rate):
        raise TypeError(f"{path}.clockRate must be an int, got {clock_rate!r}")
    if clock_rate <= 0:
        raise ValueError(f"{path}.clockRate must be positive, got {clock_rate}")
    if kind == "audio":
        channels = codec.get("channels")
        if channels is None:
            codec["channels"] = 1
        else:
            _check_int(channels, f"{path}.channels", 1, 255)
    else:
        codec.pop("channels", None)
    params = codec.get("parameters")
    if params is None:
        codec["parameters"] = params = {}
    _check_dict(params, f"{path}.parameters")
    _validate_parameters(params, f"{path}.parameters", codec=True)
    feedback = codec.get("rtcpFeedback")
    if feedback is None:
        codec["rtcpFeedback"] = feedback = []
    _check_list(feedback, f"{path}.rtcpFeedback")
    for i, fb in enumerate(feedback):
        _validate_rtcp_feedback(fb, f"{path}.rtcpFeedback[{i}]")


def _validate_header_extension_capability(ext: Any, path: str) -> None:
    """mediasoup ``validateRtpHeaderExtension``."""
    _check_dict(ext, path)
    kind = ext.get("kind")
    if kind not in ("audio", "video"):
        raise TypeError(f"{path}.kind must be 'audio' or 'video', got {kind!r}")
    _check_str(ext.get("uri"), f"{path}.uri")
    _check_int(ext.get("preferredId"), f"{path}.preferredId", 1, 255)
    encrypt = ext.get("preferredEncrypt")
    if encrypt is None:
        ext["preferredEncrypt"] = False
    elif not isinstance(encrypt, bool):
        raise TypeError(f"{path}.preferredEncrypt must be a bool, got {encrypt!r}")
    direction = ext.get("direction")
    if direction is None:
        ext["direction"] = "sendrecv"
    elif not isinstance(direction, str):
        raise TypeError(f"{path}.direction must be a string, got {direction!r}")
    elif direction not in _EXT_DIRECTIONS:
        raise ValueError(f"{path}.direction must be one of {sorted(_EXT_DIRECTIONS)}, got {direction!r}")


def _validate_header_extension_parameters(ext: Any, path: str) -> None:
    """mediasoup ``validateRtpHeaderExtensionParameters`` (+ the worker's id != 0 rule)."""
    _check_dict(ext, path)
    _check_str(ext.get("uri"), f"{path}.uri")
    _check_int(ext.get("id"), f"{path}.id", 1, 255)
    encrypt = ext.get("encrypt")
    if encrypt is None:
        ext["encrypt"] = False
    elif not isinstance(encrypt, bool):
        raise TypeError(f"{path}.encrypt must be a bool, got {encrypt!r}")
    params = ext.get("parameters")
    if params is None:
        ext["parameters"] = params = {}
    _check_dict(params, f"{path}.parameters")
    _validate_parameters(params, f"{path}.parameters", codec=False)


def _validate_encoding(enc: Any, path: str) -> None:
    """mediasoup ``validateRtpEncodingParameters``."""
    _check_dict(enc, path)
    _drop_none(enc, "ssrc", "rid", "codecPayloadType", "rtx", "scalabilityMode",
               "maxBitrate", "scaleResolutionDownBy")
    if "ssrc" in enc:
        _check_int(enc["ssrc"], f"{path}.ssrc", 0, _MAX_UINT32)
    if "rid" in enc:
        _check_str(enc["rid"], f"{path}.rid")
    if "codecPayloadType" in enc:
        _check_int(enc["codecPayloadType"], f"{path}.codecPayloadType", 0, 127)
    if "rtx" in enc:
        _check_dict(enc["rtx"], f"{path}.rtx")
        _check_int(enc["rtx"].get("ssrc"), f"{path}.rtx.ssrc", 0, _MAX_UINT32)
    dtx = enc.get("dtx")
    if dtx is None:
        enc["dtx"] = False
    elif not isinstance(dtx, bool):
        raise TypeError(f"{path}.dtx must be a bool, got {dtx!r}")
    if "scalabilityMode" in enc and not isinstance(enc["scalabilityMode"], str):
        raise TypeError(f"{path}.scalabilityMode must be a string, got {enc['scalabilityMode']!r}")
    for key in ("maxBitrate", "scaleResolutionDownBy"):
        if key in enc:
            if not _is_number(enc[key]):
                raise TypeError(f"{path}.{key} must be a number, got {enc[key]!r}")
            if enc[key] < 0:
                raise ValueError(f"{path}.{key} must not be negative, got {enc[key]}")


def _validate_rtcp(rtcp: Any, path: str) -> None:
    """mediasoup ``validateRtcpParameters`` (an explicit ``reducedSize: False`` is kept)."""
    _check_dict(rtcp, path)
    _drop_none(rtcp, "cname")
    if "cname" in rtcp and not isinstance(rtcp["cname"], str):
        raise TypeError(f"{path}.cname must be a string, got {rtcp['cname']!r}")
    reduced = rtcp.get("reducedSize")
    if reduced is None:
        rtcp["reducedSize"] = True
    elif not isinstance(reduced, bool):
        raise TypeError(f"{path}.reducedSize must be a bool, got {reduced!r}")


def _validate_capabilities_in_place(caps: Any, path: str) -> None:
    _check_dict(caps, path)
    for key in ("codecs", "headerExtensions"):
        if caps.get(key) is None:
            caps[key] = []
        _check_list(caps[key], f"{path}.{key}")
    for i, codec in enumerate(caps["codecs"]):
        _validate_codec(codec, f"{path}.codecs[{i}]", capability=True)
    for i, ext in enumerate(caps["headerExtensions"]):
        _validate_header_extension_capability(ext, f"{path}.headerExtensions[{i}]")


def validate_rtp_capabilities(caps: dict[str, Any], *, name: str = "rtpCapabilities") -> dict[str, Any]:
    """Validate ``RtpCapabilities`` and return a normalised deep copy.

    Defaults filled as mediasoup ``validateRtpCapabilities``: missing ``codecs`` /
    ``headerExtensions`` → ``[]``; each codec's ``kind`` taken from its mimeType, audio
    ``channels`` → 1 (video: removed), ``parameters`` → ``{}``, ``rtcpFeedback`` → ``[]``,
    ``fb.parameter`` → ``""``; each extension's ``preferredEncrypt`` → False, ``direction`` →
    ``"sendrecv"``. ``name`` prefixes field names in error messages.

    Raises ``TypeError`` / ``ValueError`` naming the field (e.g.
    ``"rtpCapabilities.codecs[1].preferredPayloadType must be an int"``).
    """
    caps = copy.deepcopy(caps)
    _validate_capabilities_in_place(caps, name)
    return caps


def validate_rtp_parameters(params: dict[str, Any], *, name: str = "rtpParameters") -> dict[str, Any]:
    """Validate ``RtpParameters`` and return a normalised deep copy (mediasoup
    ``validateRtpParameters``).

    ``codecs`` is mandatory; ``headerExtensions`` → ``[]`` (each: ``encrypt`` False,
    ``parameters`` ``{}``), ``encodings`` → ``[]`` (each: ``dtx`` False), ``rtcp`` → ``{}``
    (``reducedSize`` True); codecs as in :func:`validate_rtp_capabilities` but with a mandatory
    ``payloadType`` (0..127) and no ``kind``. ``mid``, if present, must be a non-empty string.
    Keys whose value is ``None`` are treated as absent. This checks shapes only: the
    producer's structural rules are in :func:`validate_producer_rtp_parameters`.

    Raises ``TypeError`` / ``ValueError`` naming the field, e.g.
    ``"rtpParameters.codecs[0].payloadType must be an int, got str"``.
    """
    _check_dict(params, name)
    params = copy.deepcopy(params)
    _drop_none(params, "mid")
    if "mid" in params:
        _check_str(params["mid"], f"{name}.mid")
    if "codecs" not in params or params["codecs"] is None:
        raise TypeError(f"{name}.codecs is missing")
    _check_list(params["codecs"], f"{name}.codecs")
    for i, codec in enumerate(params["codecs"]):
        _validate_codec(codec, f"{name}.codecs[{i}]", capability=False)
    for key in ("headerExtensions", "encodings"):
        if params.get(key) is None:
            params[key] = []
        _check_list(params[key], f"{name}.{key}")
    for i, ext in enumerate(params["headerExtensions"]):
        _validate_header_extension_parameters(ext, f"{name}.headerExtensions[{i}]")
    for i, enc in enumerate(params["encodings"]):
        _validate_encoding(enc, f"{name}.encodings[{i}]")
    if params.get("rtcp") is None:
        params["rtcp"] = {}
    _validate_rtcp(params["rtcp"], f"{name}.rtcp")
    return params


def validate_sctp_stream_parameters(
    params: dict[str, Any], *, name: str = "sctpStreamParameters"
) -> dict[str, Any]:
    """Validate ``SctpStreamParameters`` and return a normalised copy (mediasoup
    ``validateSctpStreamParameters`` + worker ``SctpStreamParameters``).

    - ``streamId``: int 0..65534 (mandatory).
    - ``maxPacketLifeTime`` (ms) / ``maxRetransmits``: optional ints 0..65535, mutually
      exclusive. Unlike mediasoup, 0 counts as given (``maxRetransmits: 0`` is a real,
      partially reliable channel).
    - ``ordered``: bool; defaults to True, or to False when either limit is given; an explicit
      ``ordered: True`` with a limit is rejected.

    Raises ``TypeError`` (wrong type, conflicting fields) / ``ValueError`` (out of range).
    """
    _check_dict(params, name)
    params = copy.deepcopy(params)
    _check_int(params.get("streamId"), f"{name}.streamId", 0, 65534)
    _drop_none(params, "ordered", "maxPacketLifeTime", "maxRetransmits")
    ordered_given = "ordered" in params
    if ordered_given and not isinstance(params["ordered"], bool):
        raise TypeError(f"{name}.ordered must be a bool, got {params['ordered']!r}")
    for key in ("maxPacketLifeTime", "maxRetransmits"):
        if key in params:
            _check_int(params[key], f"{name}.{key}", 0, 65535)
    has_lifetime = "maxPacketLifeTime" in params
    has_retransmits = "maxRetransmits" in params
    if has_lifetime and has_retransmits:
        raise TypeError(f"{name}: cannot provide both maxPacketLifeTime and maxRetransmits")
    partial = has_lifetime or has_retransmits
    if ordered_given:
        if params["ordered"] and partial:
            raise TypeError(f"{name}: cannot be ordered with maxPacketLifeTime or maxRetransmits")
    else:
        params["ordered"] = not partial
    return params


# --------------------------------------------------------------------------------------------
# Codec matching
# --------------------------------------------------------------------------------------------


def _apply_h264_answer(params: dict[str, Any], other_params: dict[str, Any]) -> bool:
    """Set ``params['profile-level-id']`` to the answer for (params, other); False on mismatch."""
    try:
        answer = h264.generate_profile_level_id_string_for_answer(params, other_params)
    except ValueError:
        return False
    if answer is not None:
        params["profile-level-id"] = answer
    else:
        params.pop("profile-level-id", None)
    return True


def match_codecs(a: dict[str, Any], b: dict[str, Any], *, strict: bool = False,
                 modify: bool = False) -> bool:
    """True if codecs ``a`` and ``b`` (capabilities or parameters) are the same codec.

    Always: same mimeType (case-insensitive), clockRate and, for audio, channels (missing = 1);
    for ``audio/multiopus`` also ``num_streams`` and ``coupled_streams``. With ``strict``:

    - H264 / H264-SVC: same ``packetization-mode`` (default 0), same profile
      (``h264_profile_level_id.is_same_profile``) and a valid answer level
      (``generate_profile_level_id_string_for_answer(a, b)`` does not raise). With ``modify``,
      ``a["parameters"]["profile-level-id"]`` is rewritten to that answer (removed if None):
      this is the one function here that mutates an argument.
    - VP9: same ``profile-id`` (default 0). AV1: same ``profile`` (default 0; libwebrtc).

    Numeric strings compare equal to numbers (``"1" == 1``). Source: mediasoup ``matchCodecs``.
    """
    a_mime = a["mimeType"].lower()
    if a_mime != b["mimeType"].lower():
        return False
    if a.get("clockRate") != b.get("clockRate"):
        return False
    if a_mime.startswith("audio/") and (a.get("channels") or 1) != (b.get("channels") or 1):
        return False
    a_params = _params(a)
    b_params = _params(b)
    if a_mime == "audio/multiopus":
        for key in ("num_streams", "coupled_streams"):
            if _num(a_params.get(key)) != _num(b_params.get(key)):
                return False
    elif a_mime in ("video/h264", "video/h264-svc"):
        if strict:
            if _num(a_params.get("packetization-mode") or 0) != _num(
                b_params.get("packetization-mode") or 0
            ):
                return False
            if not h264.is_same_profile(a_params, b_params):
                return False
            if modify:
                params = a.setdefault("parameters", {})
                if params is None:
                    params = a["parameters"] = {}
                return _apply_h264_answer(params, b_params)
            try:
                h264.generate_profile_level_id_string_for_answer(a_params, b_params)
            except ValueError:
                return False
    elif a_mime == "video/vp9":
        if strict and _num(a_params.get("profile-id") or 0) != _num(b_params.get("profile-id") or 0):
            return False
    elif a_mime == "video/av1":
        if strict and _num(a_params.get("profile") or 0) != _num(b_params.get("profile") or 0):
            return False
    return True


# --------------------------------------------------------------------------------------------
# Router capabilities
# --------------------------------------------------------------------------------------------


def generate_router_rtp_capabilities(media_codecs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The router's ``RtpCapabilities`` from the application's ``media_codecs``
    (mediasoup ``generateRouterRtpCapabilities``).

    Each entry (an ``RtpCodecCapability`` such as ``{"kind": "video", "mimeType": "video/VP8",
    "clockRate": 90000}``) is validated, matched non-strictly against the supported codecs, and
    becomes the supported codec with the entry's ``parameters`` merged over it. Its
    payload type is the entry's ``preferredPayloadType``, else the codec's static one (PCMU 0,
    PCMA 8, G722 9), else the next of :data:`DYNAMIC_PAYLOAD_TYPES` (100..127, then 96..99).
    Every video codec is followed by ``{"kind": "video", "mimeType": "video/rtx",
    "preferredPayloadType": next, "clockRate", "parameters": {"apt": codec_pt},
    "rtcpFeedback": []}``. ``headerExtensions`` is the whole supported list.

    Raises ``UnsupportedError`` (codec not supported), ``TypeError`` (bad entry, or a duplicated
    ``preferredPayloadType``), ``ValueError("media_codecs: cannot allocate more dynamic codec
    payload types")`` when the pool runs out.
    """
    if media_codecs is None:
        media_codecs = []
    if not isinstance(media_codecs, (list, tuple)):
        raise TypeError(f"media_codecs must be a list, got {type(media_codecs).__name__}")
    supported = get_supported_rtp_capabilities()
    pool = list(DYNAMIC_PAYLOAD_TYPES)
    codecs: list[dict[str, Any]] = []
    used_pts: set[int] = set()

    def take_dynamic(path: str) -> int:
        if not pool:
            raise ValueError(f"media_codecs: cannot allocate more dynamic codec payload types ({path})")
        return pool.pop(0)

    for i, media_codec in enumerate(media_codecs):
        path = f"media_codecs[{i}]"
        media_codec = copy.deepcopy(media_codec)
        _validate_codec(media_codec, path, capability=True)
        matched = next((s for s in supported["codecs"] if match_codecs(media_codec, s)), None)
        if matched is None:
            raise UnsupportedError(
                f"{path}: media codec not supported [mimeType:{media_codec['mimeType']}, "
                f"clockRate:{media_codec['clockRate']}, channels:{media_codec.get('channels')}]"
            )
        codec = copy.deepcopy(matched)
        if "preferredPayloadType" in media_codec:
            codec["preferredPayloadType"] = pt = media_codec["preferredPayloadType"]
            if pt in pool:
                pool.remove(pt)
        elif "preferredPayloadType" not in codec:
            codec["preferredPayloadType"] = take_dynamic(path)
        pt = codec["preferredPayloadType"]
        if pt in used_pts:
            raise TypeError(f"{path}.preferredPayloadType: duplicated codec.preferredPayloadType {pt}")
        used_pts.add(pt)
        codec["parameters"] = {**codec["parameters"], **media_codec["parameters"]}
        # mediasoup's key order, so dumps read like mediasoup's.
        codec = {k: codec[k] for k in _CAPABILITY_KEY_ORDER if k in codec} | codec
        codecs.append(codec)
        if codec["kind"] == "video":
            rtx_pt = take_dynamic(path)
            used_pts.add(rtx_pt)
            codecs.append({
                "kind": "video",
                "mimeType": "video/rtx",
                "preferredPayloadType": rtx_pt,
                "clockRate": codec["clockRate"],
                "parameters": {"apt": pt},
                "rtcpFeedback": [],
            })
    return {"codecs": codecs, "headerExtensions": supported["headerExtensions"]}


# --------------------------------------------------------------------------------------------
# Producing
# --------------------------------------------------------------------------------------------


def _encoding_codec(params: dict[str, Any], encoding: dict[str, Any]) -> dict[str, Any] | None:
    """The media codec an encoding uses: its ``codecPayloadType`` or the first media codec."""
    pt = encoding.get("codecPayloadType")
    for codec in params["codecs"]:
        if pt is None and not is_rtx_codec(codec) or pt is not None and codec["payloadType"] == pt:
            return codec
    return None


def get_producer_type(rtp_parameters: dict[str, Any]) -> str:
    """``"simple"``, ``"simulcast"`` or ``"svc"`` for (validated) producer ``rtp_parameters``.

    - Several encodings: ``"simulcast"`` (codec must be in :data:`SIMULCAST_MIME_TYPES`).
    - One encoding whose scalabilityMode has more than one spatial or temporal layer:
      ``"svc"`` if the codec is in :data:`SVC_MIME_TYPES`, else ``"simulcast"`` if in
      :data:`SIMULCAST_MIME_TYPES` (VP8/H264 temporal layers), else unsupported.
    - Otherwise ``"simple"``.

    Raises ``UnsupportedError`` when the codec cannot do what the encodings ask (mediasoup
    ``RtpParameters::GetType`` + ``Codecs::Tools::IsValidTypeForCodec``, where it is a TypeError).
    """
    encodings = rtp_parameters.get("encodings") or [{}]
    codec = _encoding_codec(rtp_parameters, encodings[0])
    mime = codec["mimeType"].lower() if codec else ""
    if len(encodings) > 1:
        if mime not in SIMULCAST_MIME_TYPES:
            raise UnsupportedError(f"rtpParameters: {mime or 'no media'} codec not supported for simulcast")
        return "simulcast"
    mode = encodings[0].get("scalabilityMode")
    layers = parse_scalability_mode(mode)
    if layers["spatialLayers"] > 1 or layers["temporalLayers"] > 1:
        if mime in SVC_MIME_TYPES:
            return "svc"
        if mime in SIMULCAST_MIME_TYPES:
            return "simulcast"
        raise UnsupportedError(
            f"rtpParameters.encodings[0].scalabilityMode: {mode!r} not supported for {mime or 'no media'} codec"
        )
    return "simple"


def validate_producer_rtp_parameters(kind: str, rtp_parameters: dict[str, Any]) -> dict[str, Any]:
    """Everything mediasoup checks on ``transport.produce()`` before mapping, on a normalised
    copy (:func:`validate_rtp_parameters`, then the worker's ``RtpParameters`` / ``Producer``
    rules):

    - ``kind`` is ``"audio"`` or ``"video"`` and every codec's mimeType is of that kind;
    - empty ``encodings`` become ``[{}]``; ``codecs`` is not empty and has a media codec;
    - payload types are unique; an RTX codec's ``apt`` names a non-RTX codec in the list;
    - an encoding's ``codecPayloadType`` names a media codec;
    - with several encodings, each has ``ssrc`` or ``rid`` and none has several spatial layers;
    - a single encoding with neither ``ssrc`` nor ``rid`` requires ``mid``;
    - :func:`get_producer_type` accepts it.

    Returns the normalised copy. Raises ``TypeError`` / ``ValueError`` naming the field,
    ``UnsupportedError`` from :func:`get_producer_type`.
    """
    if kind not in ("audio", "video"):
        raise TypeError(f"kind must be 'audio' or 'video', got {kind!r}")
    params = validate_rtp_parameters(rtp_parameters)
    codecs = params["codecs"]
    if not codecs:
        raise TypeError("rtpParameters.codecs must not be empty")
    by_pt: dict[int, dict[str, Any]] = {}
    for i, codec in enumerate(codecs):
        if get_kind(codec["mimeType"]) != kind:
            raise TypeError(f"rtpParameters.codecs[{i}].mimeType {codec['mimeType']!r} is not of kind {kind!r}")
        if codec["payloadType"] in by_pt:
            raise TypeError(f"rtpParameters.codecs[{i}].payloadType {codec['payloadType']} is duplicated")
        by_pt[codec["payloadType"]] = codec
    for i, codec in enumerate(codecs):
        if is_rtx_codec(codec):
            apt = codec["parameters"].get("apt")
            target = by_pt.get(apt)
            if target is None:
                raise TypeError(f"rtpParameters.codecs[{i}].parameters.apt {apt!r} names no codec")
            if is_rtx_codec(target):
                raise TypeError(f"rtpParameters.codecs[{i}].parameters.apt {apt} names an RTX codec")
    if all(is_rtx_codec(codec) for codec in codecs):
        raise TypeError("rtpParameters.codecs has no media codec")
    encodings = params["encodings"]
    if not encodings:
        params["encodings"] = encodings = [{}]
    for i, enc in enumerate(encodings):
        pt = enc.get("codecPayloadType")
        if pt is not None and (pt not in by_pt or is_rtx_codec(by_pt[pt])):
            raise TypeError(f"rtpParameters.encodings[{i}].codecPayloadType {pt} names no media codec")
        if len(encodings) > 1:
            if "ssrc" not in enc and not enc.get("rid"):
                raise TypeError(f"rtpParameters.encodings[{i}] needs ssrc or rid when there are several encodings")
            if parse_scalability_mode(enc.get("scalabilityMode"))["spatialLayers"] > 1:
                raise TypeError(
                    f"rtpParameters.encodings[{i}].scalabilityMode: cannot use both simulcast and "
                    "encodings with multiple SVC spatial layers"
                )
    if len(encodings) == 1 and "ssrc" not in encodings[0] and not encodings[0].get("rid") and not params.get("mid"):
        raise TypeError("rtpParameters.mid is required when the single encoding has neither ssrc nor rid")
    get_producer_type(params)
    return params


def _map_producer(
    params: dict[str, Any], caps: dict[str, Any], random_ssrc: RandomSsrc | None
) -> dict[str, Any]:
    """mediasoup ``getProducerRtpParametersMapping`` on ``params`` (modified in place: H264
    ``profile-level-id`` set to the answer level)."""
    cap_codecs = caps["codecs"]
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for i, codec in enumerate(params["codecs"]):
        if is_rtx_codec(codec):
            continue
        matched = next((c for c in cap_codecs if match_codecs(codec, c, strict=True, modify=True)), None)
        if matched is None:
            raise UnsupportedError(
                f"rtpParameters.codecs[{i}]: unsupported codec [mimeType:{codec['mimeType']}, "
                f"payloadType:{codec['payloadType']}]"
            )
        pairs.append((codec, matched))
    for i, codec in enumerate(params["codecs"]):
        if not is_rtx_codec(codec):
            continue
        apt = _params(codec).get("apt")
        media = next((c for c in params["codecs"] if c["payloadType"] == apt), None)
        if media is None:
            raise TypeError(
                f"rtpParameters.codecs[{i}].parameters.apt: missing media codec for RTX payloadType "
                f"{codec['payloadType']}"
            )
        cap_media = next((cap for c, cap in pairs if c is media), None)
        if cap_media is None:
            raise TypeError(f"rtpParameters.codecs[{i}].parameters.apt {apt} names an RTX codec")
        cap_rtx = next(
            (c for c in cap_codecs
             if is_rtx_codec(c) and _params(c).get("apt") == cap_media["preferredPayloadType"]),
            None,
        )
        if cap_rtx is None:
            raise UnsupportedError(
                f"rtpParameters.codecs[{i}]: no RTX codec for capability codec PT "
                f"{cap_media['preferredPayloadType']}"
            )
        pairs.append((codec, cap_rtx))
    mapped_ssrc = (random_ssrc or generate_random_ssrc)()
    encodings = []
    for i, enc in enumerate(params.get("encodings") or []):
        entry: dict[str, Any] = {"mappedSsrc": mapped_ssrc + i}
        if enc.get("rid"):
            entry["rid"] = enc["rid"]
        if enc.get("ssrc") is not None:
            entry["ssrc"] = enc["ssrc"]
        if enc.get("scalabilityMode"):
            entry["scalabilityMode"] = enc["scalabilityMode"]
        encodings.append(entry)
    return {
        "codecs": [
            {"payloadType": c["payloadType"], "mappedPayloadType": cap["preferredPayloadType"]}
            for c, cap in pairs
        ],
        "encodings": encodings,
    }


def get_producer_rtp_parameters_mapping(
    rtp_parameters: dict[str, Any],
    router_rtp_capabilities: dict[str, Any],
    *,
    random_ssrc: RandomSsrc | None = None,
) -> dict[str, Any]:
    """How a producer's payload types and encodings map onto the router's
    (mediasoup ``getProducerRtpParametersMapping``).

    Returns ``{"codecs": [{"payloadType", "mappedPayloadType"}], "encodings": [{"ssrc"?,
    "rid"?, "scalabilityMode"?, "mappedSsrc"}]}``: media codecs first (each strict-matched to
    the first router codec that fits, H264 profiles included), then RTX codecs (mapped to the
    router RTX whose ``apt`` is the mapped media PT); ``mappedSsrc`` = ``random_ssrc()`` (default
    :func:`generate_random_ssrc`) + encoding index.

    Raises ``UnsupportedError`` (no router codec / no router RTX), ``TypeError`` (RTX ``apt``
    names no media codec).
    """
    return _map_producer(copy.deepcopy(rtp_parameters), router_rtp_capabilities, random_ssrc)


def get_consumable_rtp_parameters(
    kind: str,
    rtp_parameters: dict[str, Any],
    router_rtp_capabilities: dict[str, Any],
    rtp_mapping: dict[str, Any],
) -> dict[str, Any]:
    """The producer's parameters as the router forwards them to consumers (mediasoup
    ``getConsumableRtpParameters``).

    - codecs: per producer media codec, the mapped router codec (mimeType, PT, clockRate,
      channels, rtcpFeedback) with the **producer's** ``parameters`` (H264 ``profile-level-id``
      set to the answer level, as mediasoup's mapping leaves it), followed by the router's RTX
      codec for it if any;
    - headerExtensions: every router extension of ``kind`` with direction sendrecv/sendonly, as
      ``{"uri", "id": preferredId, "encrypt": preferredEncrypt, "parameters": {}}``;
    - encodings: the producer's minus ``rid``/``rtx``/``codecPayloadType``, ``ssrc`` = mappedSsrc;
    - rtcp: ``{"cname": producer cname, "reducedSize": True}``.

    Raises ``TypeError`` for a bad ``kind``, ``ValueError`` if ``rtp_mapping`` does not fit
    ``rtp_parameters``.
    """
    if kind not in ("audio", "video"):
        raise TypeError(f"kind must be 'audio' or 'video', got {kind!r}")
    params = copy.deepcopy(rtp_parameters)
    cap_codecs = router_rtp_capabilities["codecs"]
    codecs: list[dict[str, Any]] = []
    for codec in params["codecs"]:
        if is_rtx_codec(codec):
            continue
        mapped_pt = next(
            (e["mappedPayloadType"] for e in rtp_mapping["codecs"] if e["payloadType"] == codec["payloadType"]),
            None,
        )
        cap = next((c for c in cap_codecs if c.get("preferredPayloadType") == mapped_pt), None)
        if mapped_pt is None or cap is None:
            raise ValueError(f"rtp_mapping: no router codec for payloadType {codec['payloadType']}")
        parameters = codec.get("parameters") or {}
        if codec["mimeType"].lower() in ("video/h264", "video/h264-svc"):
            _apply_h264_answer(parameters, _params(cap))
        consumable: dict[str, Any] = {
            "mimeType": cap["mimeType"],
            "payloadType": cap["preferredPayloadType"],
            "clockRate": cap["clockRate"],
        }
        if cap.get("channels") is not None:
            consumable["channels"] = cap["channels"]
        consumable["parameters"] = parameters
        consumable["rtcpFeedback"] = copy.deepcopy(cap.get("rtcpFeedback") or [])
        codecs.append(consumable)
        cap_rtx = next(
            (c for c in cap_codecs if is_rtx_codec(c) and _params(c).get("apt") == consumable["payloadType"]),
            None,
        )
        if cap_rtx is not None:
            codecs.append({
                "mimeType": cap_rtx["mimeType"],
                "payloadType": cap_rtx["preferredPayloadType"],
                "clockRate": cap_rtx["clockRate"],
                "parameters": copy.deepcopy(_params(cap_rtx)),
                "rtcpFeedback": copy.deepcopy(cap_rtx.get("rtcpFeedback") or []),
            })
    header_extensions = [
        {"uri": ext["uri"], "id": ext["preferredId"], "encrypt": ext.get("preferredEncrypt", False),
         "parameters": {}}
        for ext in router_rtp_capabilities.get("headerExtensions") or []
        if ext.get("kind") == kind and ext.get("direction", "sendrecv") in ("sendrecv", "sendonly")
    ]
    encodings = params.get("encodings") or []
    mapped = rtp_mapping["encodings"]
    if len(mapped) < len(encodings):
        raise ValueError("rtp_mapping.encodings is shorter than rtpParameters.encodings")
    for enc, entry in zip(encodings, mapped):
        enc.pop("rid", None)
        enc.pop("rtx", None)
        enc.pop("codecPayloadType", None)
        enc["ssrc"] = entry["mappedSsrc"]
    rtcp: dict[str, Any] = {}
    cname = (params.get("rtcp") or {}).get("cname")
    if cname is not None:
        rtcp["cname"] = cname
    rtcp["reducedSize"] = True
    return {"codecs": codecs, "headerExtensions": header_extensions, "encodings": encodings, "rtcp": rtcp}


def prepare_producer_rtp_parameters(
    kind: str,
    rtp_parameters: dict[str, Any],
    router_rtp_capabilities: dict[str, Any],
    *,
    cname: str | None = None,
    random_ssrc: RandomSsrc | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """The whole ORTC side of ``transport.produce()``.

    Returns ``(rtp_parameters, rtp_mapping, consumable_rtp_parameters, producer_type)``:
    the validated, normalised producer parameters (``rtcp.cname`` overridden by ``cname`` if
    given: a WebRtcTransport passes its shared CNAME, a PipeTransport passes None; H264
    ``profile-level-id`` set to the answer level), the mapping, the consumable parameters and
    ``"simple"|"simulcast"|"svc"``.

    Raises as :func:`validate_producer_rtp_parameters` and
    :func:`get_producer_rtp_parameters_mapping`.
    """
    params = validate_producer_rtp_parameters(kind, rtp_parameters)
    if cname is not None:
        _check_str(cname, "cname")
        params["rtcp"]["cname"] = cname
    rtp_mapping = _map_producer(params, router_rtp_capabilities, random_ssrc)
    consumable = get_consumable_rtp_parameters(kind, params, router_rtp_capabilities, rtp_mapping)
    return params, rtp_mapping, consumable, get_producer_type(params)


# --------------------------------------------------------------------------------------------
# Consuming
# --------------------------------------------------------------------------------------------


def can_consume(consumable_rtp_parameters: dict[str, Any], rtp_capabilities: dict[str, Any]) -> bool:
    """True if an endpoint with ``rtp_capabilities`` can receive the producer: some consumable
    codec strict-matches a capability codec, and the first such codec is not RTX (mediasoup
    ``canConsume``).

    Raises ``TypeError`` / ``ValueError`` if ``rtp_capabilities`` is invalid (the router's
    ``can_consume`` catches that and answers False, as mediasoup's Router does).
    """
    caps = validate_rtp_capabilities(rtp_capabilities)
    for codec in consumable_rtp_parameters["codecs"]:
        if any(match_codecs(cap, codec, strict=True) for cap in caps["codecs"]):
            return not is_rtx_codec(codec)
    return False


def _reduce_feedback(codecs: list[dict[str, Any]], header_extensions: list[dict[str, Any]]) -> None:
    """transport-cc if its extension is negotiated, else REMB if abs-send-time is, else neither."""
    uris = {ext["uri"] for ext in header_extensions}
    if URI_TRANSPORT_WIDE_CC_01 in uris:
        drop = ("goog-remb",)
    elif URI_ABS_SEND_TIME in uris:
        drop = ("transport-cc",)
    else:
        drop = ("transport-cc", "goog-remb")
    for codec in codecs:
        codec["rtcpFeedback"] = [fb for fb in codec["rtcpFeedback"] if fb["type"] not in drop]


def _pipe_encodings(
    consumable: dict[str, Any], rtx: bool, random_ssrc: RandomSsrc
) -> list[dict[str, Any]]:
    encodings = copy.deepcopy(consumable.get("encodings") or [])
    base_ssrc = random_ssrc()
    base_rtx_ssrc = random_ssrc()
    for i, enc in enumerate(encodings):
        enc["ssrc"] = base_ssrc + i
        if rtx:
            enc["rtx"] = {"ssrc": base_rtx_ssrc + i}
        else:
            enc.pop("rtx", None)
    return encodings


def get_consumer_rtp_parameters(
    consumable_rtp_parameters: dict[str, Any],
    remote_rtp_capabilities: dict[str, Any],
    *,
    pipe: bool = False,
    enable_rtx: bool = True,
    random_ssrc: RandomSsrc | None = None,
) -> dict[str, Any]:
    """``RtpParameters`` for one consumer (mediasoup ``getConsumerRtpParameters``); ``mid`` is
    not set (the transport sets it).

    - codecs: consumable codecs that strict-match a remote capability codec (RTX skipped when
      ``not enable_rtx``); each takes the **remote** codec's ``rtcpFeedback`` (plain ``nack``
      dropped when ``not enable_rtx``); RTX codecs whose ``apt`` codec was dropped are removed;
    - headerExtensions: consumable extensions whose ``uri`` and ``id`` equal a remote
      extension's ``uri`` and ``preferredId``;
    - feedback reduction: transport-cc extension → drop ``goog-remb``; else abs-send-time →
      drop ``transport-cc``; else drop both;
    - encodings: one ``{"ssrc": random, "rtx"?: {"ssrc": ssrc + 1}, "scalabilityMode"?,
      "maxBitrate"?}`` (simulcast: ``L{n_encodings}T{temporal layers}``; maxBitrate the largest
      of the producer's); with ``pipe``, every consumable encoding with ``ssrc`` = base + i and
      ``rtx.ssrc`` = rtx base + i;
    - rtcp: the consumable's.

    Raises ``UnsupportedError("no compatible media codecs")``, ``TypeError`` / ``ValueError``
    for invalid ``remote_rtp_capabilities``.
    """
    random_ssrc = random_ssrc or generate_random_ssrc
    caps = validate_rtp_capabilities(remote_rtp_capabilities)
    codecs: list[dict[str, Any]] = []
    for codec in copy.deepcopy(consumable_rtp_parameters["codecs"]):
        if not enable_rtx and is_rtx_codec(codec):
            continue
        cap = next((c for c in caps["codecs"] if match_codecs(c, codec, strict=True)), None)
        if cap is None:
            continue
        codec["rtcpFeedback"] = [
            dict(fb) for fb in cap["rtcpFeedback"] if enable_rtx or fb["type"] != "nack" or fb["parameter"]
        ]
        codecs.append(codec)
    media_pts = {c["payloadType"] for c in codecs if not is_rtx_codec(c)}
    codecs = [c for c in codecs if not is_rtx_codec(c) or _params(c).get("apt") in media_pts]
    rtx_supported = any(is_rtx_codec(c) for c in codecs)
    if not codecs or is_rtx_codec(codecs[0]):
        raise UnsupportedError("no compatible media codecs")
    remote_exts = {(ext["uri"], ext["preferredId"]) for ext in caps["headerExtensions"]}
    header_extensions = [
        copy.deepcopy(ext)
        for ext in consumable_rtp_parameters.get("headerExtensions") or []
        if (ext["uri"], ext["id"]) in remote_exts
    ]
    _reduce_feedback(codecs, header_extensions)
    consumable_encodings = consumable_rtp_parameters.get("encodings") or []
    if pipe:
        encodings = _pipe_encodings(consumable_rtp_parameters, rtx_supported, random_ssrc)
    else:
        encoding: dict[str, Any] = {"ssrc": random_ssrc()}
        if rtx_supported:
            encoding["rtx"] = {"ssrc": encoding["ssrc"] + 1}
        mode = next((e["scalabilityMode"] for e in consumable_encodings if e.get("scalabilityMode")), None)
        if len(consumable_encodings) > 1:
            mode = f"L{len(consumable_encodings)}T{parse_scalability_mode(mode)['temporalLayers']}"
        if mode:
            encoding["scalabilityMode"] = mode
        max_bitrate = max((e.get("maxBitrate") or 0 for e in consumable_encodings), default=0)
        if max_bitrate:
            encoding["maxBitrate"] = max_bitrate
        encodings = [encoding]
    return {
        "codecs": codecs,
        "headerExtensions": header_extensions,
        "encodings": encodings,
        "rtcp": copy.deepcopy(consumable_rtp_parameters.get("rtcp") or {}),
    }


_PIPE_DROPPED_EXTENSIONS = frozenset({URI_MID, URI_ABS_SEND_TIME, URI_TRANSPORT_WIDE_CC_01})


def get_pipe_consumer_rtp_parameters(
    consumable_rtp_parameters: dict[str, Any],
    *,
    enable_rtx: bool = False,
    random_ssrc: RandomSsrc | None = None,
) -> dict[str, Any]:
    """``RtpParameters`` for a PipeTransport consumer (mediasoup ``getPipeConsumerRtpParameters``):
    all encodings kept, no BWE, no mid.

    - codecs: the consumable ones (RTX only with ``enable_rtx``), ``rtcpFeedback`` reduced to
      ``nack pli``, ``ccm fir`` and, with ``enable_rtx``, plain ``nack``;
    - headerExtensions: the consumable ones minus mid, abs-send-time and transport-wide-cc;
    - encodings: every consumable encoding, ``ssrc`` = random base + i, ``rtx.ssrc`` = random
      rtx base + i with ``enable_rtx`` (else no ``rtx``);
    - rtcp: the consumable's.
    """
    random_ssrc = random_ssrc or generate_random_ssrc
    codecs = []
    for codec in copy.deepcopy(consumable_rtp_parameters["codecs"]):
        if not enable_rtx and is_rtx_codec(codec):
            continue
        codec["rtcpFeedback"] = [
            fb for fb in codec.get("rtcpFeedback") or []
            if (fb["type"] == "nack" and fb.get("parameter") == "pli")
            or (fb["type"] == "ccm" and fb.get("parameter") == "fir")
            or (enable_rtx and fb["type"] == "nack" and not fb.get("parameter"))
        ]
        codecs.append(codec)
    header_extensions = [
        copy.deepcopy(ext)
        for ext in consumable_rtp_parameters.get("headerExtensions") or []
        if ext["uri"] not in _PIPE_DROPPED_EXTENSIONS
    ]
    return {
        "codecs": codecs,
        "headerExtensions": header_extensions,
        "encodings": _pipe_encodings(consumable_rtp_parameters, enable_rtx, random_ssrc),
        "rtcp": copy.deepcopy(consumable_rtp_parameters.get("rtcp") or {}),
    }
