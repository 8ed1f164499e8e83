"""RFC 7983 §7 first-byte demultiplexing and RFC 5761 §4 RTP/RTCP split."""

import pytest

from raysfu.transport import demux
from raysfu.transport.demux import DTLS, RTP_OR_RTCP, STUN, UNKNOWN, classify, classify_datagram, is_rtcp


def expected_class(b: int) -> int:
    if 0 <= b <= 3:
        return STUN
    if 20 <= b <= 63:
        return DTLS
    if 128 <= b <= 191:
        return RTP_OR_RTCP
    return UNKNOWN


def test_constants_are_distinct():
    assert len({STUN, DTLS, RTP_OR_RTCP, UNKNOWN}) == 4


@pytest.mark.parametrize("first_byte", range(256))
def test_classify_every_first_byte(first_byte):
    assert classify(first_byte) == expected_class(first_byte)


@pytest.mark.parametrize(
    "first_byte, expected",
    [
        (0, STUN), (1, STUN), (3, STUN), (4, UNKNOWN),
        (16, UNKNOWN), (19, UNKNOWN),  # ZRTP
        (20, DTLS), (22, DTLS), (23, DTLS), (63, DTLS),
        (64, UNKNOWN), (79, UNKNOWN),  # TURN channel
        (127, UNKNOWN), (128, RTP_OR_RTCP), (0x80, RTP_OR_RTCP), (0x90, RTP_OR_RTCP),
        (191, RTP_OR_RTCP), (192, UNKNOWN), (255, UNKNOWN),
    ],
)
def test_classify_range_boundaries(first_byte, expected):
    assert classify(first_byte) == expected


@pytest.mark.parametrize("bad", [-1, 256, 1000])
def test_classify_out_of_range_raises_value_error(bad):
    with pytest.raises(ValueError, match="first_byte"):
        classify(bad)


def test_classify_non_int_raises_type_error():
    with pytest.raises(TypeError):
        classify("a")


def test_classify_datagram_uses_first_byte_and_empty_is_unknown():
    assert classify_datagram(b"") == UNKNOWN
    assert classify_datagram(b"\x00\x01" + bytes(18)) == STUN
    assert classify_datagram(bytearray(b"\x16\xfe\xfd")) == DTLS
    assert classify_datagram(memoryview(b"\x80\x60")) == RTP_OR_RTCP


@pytest.mark.parametrize("second_byte", range(256))
def test_is_rtcp_by_second_byte(second_byte):
    assert is_rtcp(bytes([0x80, second_byte, 0, 0])) == (192 <= second_byte <= 223)


@pytest.mark.parametrize(
    "data, expected",
    [
        (bytes([0x81, 200]) + bytes(26), True),  # SR
        (bytes([0x81, 201]) + bytes(6), True),  # RR
        (bytes([0x81, 205]), True),  # RTPFB (NACK, TWCC)
        (bytes([0x81, 206]), True),  # PSFB (PLI, FIR, REMB)
        (bytes([0x80, 96]), False),  # RTP PT 96, no marker
        (bytes([0x80, 96 | 0x80]), False),  # RTP PT 96 with marker = 224
        (bytes([0x80, 111]), False),  # opus
        (b"\x80", False),
        (b"", False),
    ],
)
def test_is_rtcp_examples(data, expected):
    assert is_rtcp(data) is expected


def test_module_exports():
    assert set(demux.__all__) >= {"classify", "is_rtcp", "STUN", "DTLS", "RTP_OR_RTCP", "UNKNOWN"}
