"""H264 profile-level-id parsing, formatting and answer negotiation (RFC 6184 §8.1)."""

import pytest

from raysfu.transport.h264_profile_level_id import (
    DEFAULT_PROFILE_LEVEL_ID,
    Level,
    Profile,
    ProfileLevelId,
    generate_profile_level_id_string_for_answer,
    is_level_asymmetry_allowed,
    is_same_profile,
    is_same_profile_and_level,
    parse_profile_level_id,
    parse_sdp_profile_level_id,
    profile_level_id_to_string,
    supported_level,
)

P = Profile
L = Level


@pytest.mark.parametrize(
    "text, level",
    [("42e01f", L.L3_1), ("42e00b", L.L1_1), ("42f00b", L.L1_B), ("42C02A", L.L4_2),
     ("640c34", L.L5_2), ("4d000a", L.L1), ("640032", L.L5)],
)
def test_parse_reads_level_and_level_1b_from_constraint_set3(text, level):
    assert parse_profile_level_id(text).level == level


@pytest.mark.parametrize(
    "text, profile",
    [
        ("42e01f", P.CONSTRAINED_BASELINE),  # 42 x1xx0000
        ("42C02A", P.CONSTRAINED_BASELINE),
        ("4de01f", P.CONSTRAINED_BASELINE),  # 4d 1xxx0000
        ("58f01f", P.CONSTRAINED_BASELINE),  # 58 11xx0000
        ("42a01f", P.BASELINE),
        ("58A01F", P.BASELINE),
        ("4D401f", P.MAIN),
        ("4d0032", P.MAIN),
        ("64001f", P.HIGH),
        ("640c1f", P.CONSTRAINED_HIGH),
        ("f4001f", P.PREDICTIVE_HIGH_444),
    ],
)
def test_parse_maps_profile_idc_and_iop_bit_patterns(text, profile):
    assert parse_profile_level_id(text).profile == profile


@pytest.mark.parametrize(
    "bad",
    [None, "", " 42e01f", "4242e01f", "e01f", "gggggg", "000000",
     "42e000", "42e00f", "42e0ff",  # unknown level_idc
     "42e11f", "58601f", "64e01f", "65001f"],  # unknown profile
)
def test_parse_rejects_malformed_unknown_level_or_profile(bad):
    assert parse_profile_level_id(bad) is None


def test_parse_accepts_an_sdp_parser_int():
    # sdp-transform style parsers give 640032 (no hex letters) as a number.
    assert parse_profile_level_id(640032) == ProfileLevelId(P.HIGH, L.L5)


@pytest.mark.parametrize(
    "pli, text",
    [
        (ProfileLevelId(P.CONSTRAINED_BASELINE, L.L3_1), "42e01f"),
        (ProfileLevelId(P.BASELINE, L.L1), "42000a"),
        (ProfileLevelId(P.MAIN, L.L3_1), "4d001f"),
        (ProfileLevelId(P.CONSTRAINED_HIGH, L.L4_2), "640c2a"),
        (ProfileLevelId(P.HIGH, L.L4_2), "64002a"),
        (ProfileLevelId(P.PREDICTIVE_HIGH_444, L.L5_1), "f40033"),
        (ProfileLevelId(P.CONSTRAINED_BASELINE, L.L1_B), "42f00b"),
        (ProfileLevelId(P.BASELINE, L.L1_B), "42100b"),
        (ProfileLevelId(P.MAIN, L.L1_B), "4d100b"),
    ],
)
def test_format_canonical_strings(pli, text):
    assert profile_level_id_to_string(pli) == text


def test_format_rejects_level_1b_for_high_profiles():
    assert profile_level_id_to_string(ProfileLevelId(P.HIGH, L.L1_B)) is None
    assert profile_level_id_to_string(ProfileLevelId(P.CONSTRAINED_HIGH, L.L1_B)) is None


@pytest.mark.parametrize(
    "text, canonical",
    [("42e01f", "42e01f"), ("42E01F", "42e01f"), ("4d100b", "4d100b"), ("4D100B", "4d100b"),
     ("640c2a", "640c2a"), ("640C2A", "640c2a"), ("4de01f", "42e01f"), ("58A01F", "42001f")],
)
def test_round_trip_gives_canonical_form(text, canonical):
    assert profile_level_id_to_string(parse_profile_level_id(text)) == canonical


def test_round_trip_every_profile_and_level():
    for profile in Profile:
        for level in Level:
            text = profile_level_id_to_string(ProfileLevelId(profile, level))
            if text is not None:
                assert parse_profile_level_id(text) == (profile, level)


def test_sdp_default_is_constrained_baseline_3_1_and_invalid_is_none():
    assert parse_sdp_profile_level_id() == DEFAULT_PROFILE_LEVEL_ID
    assert parse_sdp_profile_level_id({"packetization-mode": 1}) == (P.CONSTRAINED_BASELINE, L.L3_1)
    assert parse_sdp_profile_level_id({"profile-level-id": "640c2a"}) == (P.CONSTRAINED_HIGH, L.L4_2)
    assert parse_sdp_profile_level_id({"profile-level-id": "foobar"}) is None


def test_is_same_profile():
    assert is_same_profile({"foo": "foo"}, {"bar": "bar"})
    assert is_same_profile({"profile-level-id": "42e01f"}, {"profile-level-id": "42C02A"})
    assert is_same_profile({"profile-level-id": "42a01f"}, {"profile-level-id": "58A01F"})
    assert is_same_profile({"profile-level-id": "42e01f"}, None)
    assert not is_same_profile(None, {"profile-level-id": "4d001f"})
    assert not is_same_profile({"profile-level-id": "42a01f"}, {"profile-level-id": "640c1f"})
    assert not is_same_profile({"profile-level-id": "42000a"}, {"profile-level-id": "64002a"})
    assert not is_same_profile({"profile-level-id": "CHICKEN"}, {"profile-level-id": "CHICKEN"})


def test_is_same_profile_and_level():
    assert is_same_profile_and_level({"foo": "foo"}, {"bar": "bar"})
    assert is_same_profile_and_level({"profile-level-id": "42e01f"}, {"profile-level-id": "42f01f"})
    assert is_same_profile_and_level({"profile-level-id": "42e01f"}, None)
    assert not is_same_profile_and_level({"profile-level-id": "42e01f"}, {"profile-level-id": "42e015"})
    assert not is_same_profile_and_level({"profile-level-id": "42a01f"}, {"profile-level-id": "640c1f"})


def test_level_asymmetry_flag_values():
    assert is_level_asymmetry_allowed({"level-asymmetry-allowed": 1})
    assert is_level_asymmetry_allowed({"level-asymmetry-allowed": "1"})
    assert is_level_asymmetry_allowed({"level-asymmetry-allowed": True})
    assert not is_level_asymmetry_allowed({"level-asymmetry-allowed": 0})
    assert not is_level_asymmetry_allowed({})
    assert not is_level_asymmetry_allowed(None)


def test_answer_is_none_when_neither_side_has_profile_level_id():
    assert generate_profile_level_id_string_for_answer(None, None) is None
    assert generate_profile_level_id_string_for_answer({"packetization-mode": 1}, {}) is None


def test_answer_without_asymmetry_caps_at_the_lower_level():
    low = {"profile-level-id": "42e015"}
    high = {"profile-level-id": "42e01f"}
    assert generate_profile_level_id_string_for_answer(low, high) == "42e015"
    assert generate_profile_level_id_string_for_answer(high, low) == "42e015"
    # Only one side allowing asymmetry is not enough.
    assert generate_profile_level_id_string_for_answer(
        {**high, "level-asymmetry-allowed": 1}, low) == "42e015"


def test_answer_with_asymmetry_on_both_sides_keeps_the_local_level():
    local = {"profile-level-id": "42e01f", "level-asymmetry-allowed": "1"}
    remote = {"profile-level-id": "42e015", "level-asymmetry-allowed": 1}
    assert generate_profile_level_id_string_for_answer(local, remote) == "42e01f"
    assert generate_profile_level_id_string_for_answer(remote, local) == "42e015"


def test_answer_canonicalises_profile_and_uses_default_for_missing_side():
    # 4de01f is Constrained Baseline written with profile_idc 0x4d.
    assert generate_profile_level_id_string_for_answer(
        {"profile-level-id": "4de01f"}, {"profile-level-id": "42e01f"}) == "42e01f"
    # Missing remote = Constrained Baseline 3.1, so a 5.2 local is capped to 3.1.
    assert generate_profile_level_id_string_for_answer({"profile-level-id": "42e034"}, {}) == "42e01f"


def test_answer_level_1b_ordering():
    # 1b lies between 1 and 1.1.
    assert generate_profile_level_id_string_for_answer(
        {"profile-level-id": "42f00b"}, {"profile-level-id": "42e00b"}) == "42f00b"
    assert generate_profile_level_id_string_for_answer(
        {"profile-level-id": "42f00b"}, {"profile-level-id": "42e00a"}) == "42e00a"


@pytest.mark.parametrize(
    "local, remote",
    [({"profile-level-id": "42e01f"}, {"profile-level-id": "640c1f"}),  # profile mismatch
     ({"profile-level-id": "CHICKEN"}, {"profile-level-id": "42e01f"}),  # invalid local
     ({"profile-level-id": "42e01f"}, {"profile-level-id": "42e0ff"})],  # invalid remote
)
def test_answer_raises_value_error_when_incompatible(local, remote):
    with pytest.raises(ValueError):
        generate_profile_level_id_string_for_answer(local, remote)


def test_supported_level():
    assert supported_level(640 * 480, 25) == L.L2_1
    assert supported_level(1280 * 720, 30) == L.L3_1
    assert supported_level(1920 * 1280, 60) == L.L4_2
    assert supported_level(0, 0) is None
    assert supported_level(1280 * 720, 5) is None
    assert supported_level(183 * 137, 30) is None
