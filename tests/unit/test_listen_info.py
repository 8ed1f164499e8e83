"""Listen infos (mediasoup TransportListenInfo): validation and the announced address."""

from __future__ import annotations

import pytest

from raysfu.actors.webrtc_transport import validate_listen_info
from raysfu.transport.errors import UnsupportedError


def test_wildcard_listen_ip_is_announced_as_the_node_address(monkeypatch):
    monkeypatch.setenv("RAYSFU_ANNOUNCED_ADDRESS", "203.0.113.9")
    assert validate_listen_info({"protocol": "udp", "ip": "0.0.0.0"}, "li")["announcedAddress"] == "203.0.113.9"
    assert validate_listen_info({"protocol": "udp", "ip": "127.0.0.1"}, "li")["announcedAddress"] is None
    assert validate_listen_info({"protocol": "udp", "ip": "0.0.0.0", "announcedAddress": "x.example"}, "li")["announcedAddress"] == "x.example"


@pytest.mark.parametrize(
    "info, field",
    [
        ({"protocol": "udp", "ip": "not-an-ip"}, "li.ip"),
        ({"protocol": "sctp", "ip": "127.0.0.1"}, "li.protocol"),
        ({"protocol": "udp", "ip": "127.0.0.1", "port": 70000}, "li.port"),
        ({"protocol": "udp", "ip": "127.0.0.1", "portRange": {"min": 9, "max": 1}}, "li.portRange"),
        ({"protocol": "udp", "ip": "127.0.0.1", "announcedAddress": ""}, "li.announcedAddress"),
    ],
)
def test_bad_listen_info_names_the_field(info, field):
    with pytest.raises(TypeError, match=field):
        validate_listen_info(info, "li")


def test_tcp_is_not_supported_yet():
    with pytest.raises(UnsupportedError):
        validate_listen_info({"protocol": "tcp", "ip": "127.0.0.1"}, "li")
