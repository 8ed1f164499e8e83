"""H.264 ``profile-level-id`` parsing, formatting and offer/answer negotiation.

The SDP fmtp parameter ``profile-level-id`` is three bytes in hex (RFC 6184 §8.1):
``profile_idc``, ``profile-iop`` (the constraint_set flags) and ``level_idc``. This module maps
them to a (profile, level) pair and back, and computes the level to put in an answer, the way
libwebrtc's ``h264_profile_level_id.cc`` and the npm library ``h264-profile-level-id`` (which
mediasoup's ``ortc.matchCodecs`` uses) do:

- profiles: Constrained Baseline, Baseline, Main, Constrained High, High, Predictive High 4:4:4;
- levels 1b, 1 ... 5.2 (ITU-T H.264 Table A-1). Level 1b is coded as level_idc 11 with the
  constraint_set3 flag set (for profile_idc 0x42, 0x4d, 0x58);
- Constrained Baseline is any of the bit patterns ``42 x1xx0000``, ``4d 1xxx0000``,
  ``58 11xx0000`` (RFC 6184 §8.1 table 5);
- a missing ``profile-level-id`` means Constrained Baseline level 3.1 (libwebrtc's interim
  default, crbug.com/webrtc/6337), not the RFC's Baseline level 1.

Parameter dicts are codec ``parameters`` in mediasoup's JSON (``{"profile-level-id": "42e01f",
"level-asymmetry-allowed": 1, ...}``); ``None`` is taken as ``{}``. Pure functions, no state.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Mapping, NamedTuple

__all__ = [
    "Profile",
    "Level",
    "ProfileLevelId",
    "DEFAULT_PROFILE_LEVEL_ID",
    "parse_profile_level_id",
    "profile_level_id_to_string",
    "parse_sdp_profile_level_id",
    "is_same_profile",
    "is_same_profile_and_level",
    "is_level_asymmetry_allowed",
    "generate_profile_level_id_string_for_answer",
    "supported_level",
]


class Profile(IntEnum):
    """H.264 profiles that WebRTC negotiates (values as libwebrtc / the npm library)."""

    CONSTRAINED_BASELINE = 1
    BASELINE = 2
    MAIN = 3
    CONSTRAINED_HIGH = 4
    HIGH = 5
    PREDICTIVE_HIGH_444 = 6


class Level(IntEnum):
    """H.264 levels; the value is ``level_idc`` (10 × level), except 1b which is 0."""

    L1_B = 0
    L1 = 10
    L1_1 = 11
    L1_2 = 12
    L1_3 = 13
    L2 = 20
    L2_1 = 21
    L2_2 = 22
    L3 = 30
    L3_1 = 31
    L3_2 = 32
    L4 = 40
    L4_1 = 41
    L4_2 = 42
    L5 = 50
    L5_1 = 51
    L5_2 = 52


class ProfileLevelId(NamedTuple):
    """A parsed ``profile-level-id``: ``(profile, level)``."""

    profile: Profile
    level: Level


DEFAULT_PROFILE_LEVEL_ID = ProfileLevelId(Profile.CONSTRAINED_BASELINE, Level.L3_1)

_CONSTRAINT_SET3_FLAG = 0x10
_LEVELS_BY_IDC = {lv.value: lv for lv in Level if lv is not Level.L1_B}


def _bit_pattern(pattern: str) -> tuple[int, int]:
    """``"x1xx0000"`` → ``(mask, value)``: bits marked 'x' are don't-care."""
    mask = value = 0
    for ch in pattern:
        mask = (mask << 1) | (ch != "x")
        value = (value << 1) | (ch == "1")
    return mask, value


# (profile_idc, (iop mask, iop value), profile), in match order; RFC 6184 §8.1.
_PROFILE_PATTERNS = tuple(
    (idc, _bit_pattern(pat), prof)
    for idc, pat, prof in (
        (0x42, "x1xx0000", Profile.CONSTRAINED_BASELINE),
        (0x4D, "1xxx0000", Profile.CONSTRAINED_BASELINE),
        (0x58, "11xx0000", Profile.CONSTRAINED_BASELINE),
        (0x42, "x0xx0000", Profile.BASELINE),
        (0x58, "10xx0000", Profile.BASELINE),
        (0x4D, "0x0x0000", Profile.MAIN),
        (0x64, "00000000", Profile.HIGH),
        (0x64, "00001100", Profile.CONSTRAINED_HIGH),
        (0xF4, "00000000", Profile.PREDICTIVE_HIGH_444),
    )
)

# Canonical profile_idc + profile-iop hex used when formatting.
_PROFILE_PREFIX = {
    Profile.CONSTRAINED_BASELINE: "42e0",
    Profile.BASELINE: "4200",
    Profile.MAIN: "4d00",
    Profile.CONSTRAINED_HIGH: "640c",
    Profile.HIGH: "6400",
    Profile.PREDICTIVE_HIGH_444: "f400",
}
_LEVEL_1B_STRING = {
    Profile.CONSTRAINED_BASELINE: "42f00b",
    Profile.BASELINE: "42100b",
    Profile.MAIN: "4d100b",
}

# ITU-T H.264 (02/2016) Table A-1: (max macroblocks per second, max frame size in MBs, level),
# in increasing order.
_LEVEL_CONSTRAINTS = (
    (1485, 99, Level.L1),
    (1485, 99, Level.L1_B),
    (3000, 396, Level.L1_1),
    (6000, 396, Level.L1_2),
    (11880, 396, Level.L1_3),
    (11880, 396, Level.L2),
    (19800, 792, Level.L2_1),
    (20250, 1620, Level.L2_2),
    (40500, 1620, Level.L3),
    (108000, 3600, Level.L3_1),
    (216000, 5120, Level.L3_2),
    (245760, 8192, Level.L4),
    (245760, 8192, Level.L4_1),
    (522240, 8704, Level.L4_2),
    (589824, 22080, Level.L5),
    (983040, 36864, Level.L5_1),
    (2073600, 36864, Level.L5_2),
)

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def parse_profile_level_id(value: Any) -> ProfileLevelId | None:
    """Parse a 6-hex-digit ``profile-level-id`` (case-insensitive) into ``(profile, level)``.

    Returns ``None`` when the value is not a recognised profile/level (wrong length, non-hex,
    zero, unknown ``level_idc`` or ``profile_idc``/``profile-iop`` combination), as the npm
    library does. An ``int`` is read as its decimal digits (SDP parsers turn "640032" into
    640032). Source: RFC 6184 §8.1.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) != 6 or not _HEX_DIGITS.issuperset(value):
        return None
    numeric = int(value, 16)
    if numeric == 0:
        return None
    level_idc = numeric & 0xFF
    profile_iop = (numeric >> 8) & 0xFF
    profile_idc = (numeric >> 16) & 0xFF
    if level_idc == Level.L1_1:
        level = Level.L1_B if profile_iop & _CONSTRAINT_SET3_FLAG else Level.L1_1
    else:
        level = _LEVELS_BY_IDC.get(level_idc)
        if level is None:
            return None
    for idc, (mask, masked_value), profile in _PROFILE_PATTERNS:
        if profile_idc == idc and (profile_iop & mask) == masked_value:
            return ProfileLevelId(profile, level)
    return None


def profile_level_id_to_string(profile_level_id: ProfileLevelId) -> str | None:
    """Format ``(profile, level)`` as the canonical lower-case 6-hex-digit string.

    Returns ``None`` for a combination that has no encoding (level 1b with a High profile, or an
    unknown profile). Level 1b is ``42f00b`` / ``42100b`` / ``4d100b``. Source: RFC 6184 §8.1.
    """
    profile, level = profile_level_id
    if level == Level.L1_B:
        return _LEVEL_1B_STRING.get(profile)
    prefix = _PROFILE_PREFIX.get(profile)
    if prefix is None:
        return None
    return f"{prefix}{int(level):02x}"


def parse_sdp_profile_level_id(params: Mapping[str, Any] | None = None) -> ProfileLevelId | None:
    """``profile-level-id`` of codec ``params``: the default (Constrained Baseline 3.1) if the key
    is missing or empty, ``None`` if present but invalid."""
    value = (params or {}).get("profile-level-id")
    if not value:
        return DEFAULT_PROFILE_LEVEL_ID
    return parse_profile_level_id(value)


def is_same_profile(params1: Mapping[str, Any] | None = None,
                    params2: Mapping[str, Any] | None = None) -> bool:
    """True if both parameter dicts carry valid ``profile-level-id`` with the same profile
    (levels may differ)."""
    a = parse_sdp_profile_level_id(params1)
    b = parse_sdp_profile_level_id(params2)
    return a is not None and b is not None and a.profile == b.profile


def is_same_profile_and_level(params1: Mapping[str, Any] | None = None,
                              params2: Mapping[str, Any] | None = None) -> bool:
    """True if both parameter dicts carry the same valid profile and the same level."""
    a = parse_sdp_profile_level_id(params1)
    b = parse_sdp_profile_level_id(params2)
    return a is not None and b is not None and a == b


def is_level_asymmetry_allowed(params: Mapping[str, Any] | None = None) -> bool:
    """True if ``level-asymmetry-allowed`` is 1 (``1``, ``"1"`` or ``True``); RFC 6184 §8.1."""
    value = (params or {}).get("level-asymmetry-allowed")
    return value is True or value == 1 or value == "1"


def _is_less_level(a: Level, b: Level) -> bool:
    """Level order where 1b sits between 1 and 1.1."""
    if a == Level.L1_B:
        return b not in (Level.L1, Level.L1_B)
    if b == Level.L1_B:
        return a != Level.L1
    return a < b


def generate_profile_level_id_string_for_answer(
    local_supported_params: Mapping[str, Any] | None = None,
    remote_offered_params: Mapping[str, Any] | None = None,
) -> str | None:
    """The ``profile-level-id`` to put in an answer, given local (supported) and remote
    (offered) codec parameters that describe sendrecv media.

    - Returns ``None`` when neither side has ``profile-level-id`` (both use the default).
    - The profile is the local one; the level is the local level when both sides allow level
      asymmetry, else the lower of the two levels (no level upgrade in an answer).
    - Raises ``ValueError`` when either value is invalid or the profiles differ.

    Source: RFC 6184 §8.2.2; libwebrtc ``GenerateProfileLevelIdForAnswer``.
    """
    local_supported_params = local_supported_params or {}
    remote_offered_params = remote_offered_params or {}
    if not local_supported_params.get("profile-level-id") and not remote_offered_params.get(
        "profile-level-id"
    ):
        return None
    local = parse_sdp_profile_level_id(local_supported_params)
    remote = parse_sdp_profile_level_id(remote_offered_params)
    if local is None:
        raise ValueError("local profile-level-id is invalid")
    if remote is None:
        raise ValueError("remote profile-level-id is invalid")
    if local.profile != remote.profile:
        raise ValueError("H264 profile mismatch between local and remote profile-level-id")
    if is_level_asymmetry_allowed(local_supported_params) and is_level_asymmetry_allowed(
        remote_offered_params
    ):
        level = local.level
    else:
        level = local.level if _is_less_level(local.level, remote.level) else remote.level
    return profile_level_id_to_string(ProfileLevelId(local.profile, level))


def supported_level(max_frame_pixel_count: int, max_fps: int) -> Level | None:
    """Highest level whose every valid stream a decoder handling ``max_frame_pixel_count``
    pixels per frame at ``max_fps`` frames per second can decode; ``None`` if none.

    Source: ITU-T H.264 Table A-1; libwebrtc ``H264SupportedLevel``.
    """
    for max_mbps, max_fs, level in reversed(_LEVEL_CONSTRAINTS):
        if max_fs * 256 <= max_frame_pixel_count and max_mbps <= max_fps * max_fs:
            return level
    return None
