"""The bare Python relay: the ceiling for an SFU written in Python (issue 3, item 3a).

One relay process does only what every SFU must do per packet, written as fast as Python goes
(perf-limits.md §3-§5: cffi ``recvmmsg``/``sendmmsg`` in ABI mode plus libsrtp through
pylibsrtp's cffi ``lib`` on preallocated buffers):

    recvmmsg -> srtp_unprotect (in place) -> per subscriber: copy, rewrite SSRC + sequence
    number (struct.pack_into), srtp_protect with that subscriber's own SRTP context -> sendmmsg

No RTCP, NACK, BWE or bookkeeping: the figure is what raysfu's forwarding is compared with
(target: raysfu >= 0.5x this relay's output packets per CPU-second).

Around it, all on 127.0.0.1 and all bounded in time, each in its own (spawned) process:

- a source sends SRTP (AES_CM_128_HMAC_SHA1_80 by default) video (``video_bytes`` RTP bytes at
  ``video_pps``) and audio (``audio_bytes`` at ``audio_pps``), each payload carrying the packet
  index and the send time (``time.time_ns``), evenly paced (or video in frame bursts);
- one or two sinks each own one UDP socket for a share of the subscribers; they read the clear
  RTP header only (SSRC -> subscriber, sequence continuity per subscriber and stream) and
  decrypt with the subscriber's own key a sample (``seq % 32 == 0``, or every packet with
  ``verify=True``) to check the payload is the right packet and for latency against the
  kernel's receive stamp (SO_TIMESTAMPNS). Sinks poll without blocking, so the relay's sends
  never pay for waking a reader (as with a NIC).

The relay's CPU is its own ``getrusage`` (user + system; on this kernel system time includes the
loopback delivery its sends trigger) over the measurement window, reported through a pipe.

    .venv/bin/python benchmarks/bare_relay.py --subscribers 100 500 --seconds 10 --runs 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import socket
import statistics
import struct
import sys
import time
from typing import Any

__all__ = ["main", "run_bare_relay"]

#: mediasoup crypto suite name -> pylibsrtp Policy profile attribute (RFC 3711, RFC 7714)
SRTP_PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": "SRTP_PROFILE_AES128_CM_SHA1_80",
    "AEAD_AES_128_GCM": "SRTP_PROFILE_AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM": "SRTP_PROFILE_AEAD_AES_256_GCM",
}
SOURCE_SSRCS = (0x11110001, 0x11110002)  # (video, audio) as the source sends them
SOURCE_PTS = (96, 111)
SLOT_BYTES = 1536  # one packet buffer (RTP < 1500 B plus the SRTP trailer)
RX_BATCH = 64  # recvmmsg slots in the relay
SINK_BATCH = 256  # recvmmsg slots in a sink
MAX_SEND_BATCH = 1024  # UIO_MAXIOV: most messages one sendmmsg call takes
LATENCY_SAMPLE_MASK = 31  # a sink decrypts packets whose rewritten seq % 32 == 0
MSG_WAITFORONE = 0x10000
MSG_DONTWAIT = 0x40
SO_TIMESTAMPNS = 35  # Linux: a struct timespec (CLOCK_REALTIME) cmsg with each datagram
SINK_POLL_S = 0.001  # a sink sleeps this long when its socket had less than a full batch
EAGAIN_ERRNOS = (11, 4)  # EAGAIN (SO_RCVTIMEO ran out), EINTR
RECV_TIMEOUT_S = 0.05
SOCKET_BUFFER_BYTES = 8 * 1024 * 1024

_CDEF = """
typedef unsigned int socklen_t;
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr { void *msg_name; socklen_t msg_namelen; struct iovec *msg_iov; size_t msg_iovlen;
                void *msg_control; size_t msg_controllen; int msg_flags; };
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
struct sockaddr_in { unsigned short sin_family; unsigned short sin_port; unsigned int sin_addr;
                     unsigned char sin_zero[8]; };
struct timespec { long tv_sec; long tv_nsec; };
int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags,
             struct timespec *timeout);
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
"""

_RTP_HEADER = struct.Struct(">BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
_SEQ_TS_SSRC = struct.Struct(">HII")  # at offset 2
_SEQ_SKIP_SSRC = struct.Struct(">H4xI")  # at offset 2: sequence number, SSRC
_PAYLOAD_STAMP = struct.Struct(">IQ")  # packet index, send time (CLOCK_REALTIME ns)
STAMP_OFFSET = 13  # in the RTP packet: 12-byte header, 1-byte VP8 payload descriptor
_CMSG_TIMESPEC = struct.Struct("=8xiiqq")  # cmsghdr (len, level, type) + struct timespec


def _mmsg():
    """(ffi, C) with recvmmsg/sendmmsg from the C library (cffi ABI mode, ``dlopen(None)``)."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    return ffi, ffi.dlopen(None)


def _srtp_profile(crypto_suite: str) -> tuple[int, int]:
    """(pylibsrtp profile constant, master key + salt length in bytes) for a suite name."""
    import pylibsrtp

    try:
        profile = getattr(pylibsrtp.Policy, SRTP_PROFILES[crypto_suite])
    except (KeyError, AttributeError):
        raise ValueError(f"srtp_profile: unsupported {crypto_suite!r}, expected one of "
                         f"{sorted(SRTP_PROFILES)}") from None
    lib = pylibsrtp.lib
    return profile, (lib.srtp_profile_get_master_key_length(profile)
                     + lib.srtp_profile_get_master_salt_length(profile))


def _srtp_session(key: bytes, outbound: bool, crypto_suite: str):
    import pylibsrtp

    policy = pylibsrtp.Policy(key=key, srtp_profile=_srtp_profile(crypto_suite)[0],
                              ssrc_type=(pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound
                                         else pylibsrtp.Policy.SSRC_ANY_INBOUND))
    policy.window_size = 1024
    return pylibsrtp.Session(policy)


def _udp_socket(rcvbuf: int = SOCKET_BUFFER_BYTES, timeout_s: float | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for force, plain in ((getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF),
                         (getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF)):
        try:  # needs CAP_NET_ADMIN; otherwise capped at net.core.[rw]mem_max
            sock.setsockopt(socket.SOL_SOCKET, force, rcvbuf)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, rcvbuf)
    if timeout_s is not None:  # blocking recvmmsg returns EAGAIN after this long
        sec = int(timeout_s)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        struct.pack("ll", sec, int((timeout_s - sec) * 1e6)))
    sock.bind(("127.0.0.1", 0))
    return sock


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _sys_s() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def _sub_ssrc(j: int, stream: int) -> int:
    """Rewritten SSRC of subscriber ``j``'s ``stream`` (0 video, 1 audio)."""
    return 0x22000000 + (j << 1) + stream


def _sub_seq_offset(j: int, stream: int) -> int:
    """Per-subscriber sequence-number offset (spread over the 16-bit space, so some wrap)."""
    return (j * 7919 + stream * 30011 + 1) & 0xFFFF


# ---------------------------------------------------------------------------------- relay


def _relay_main(conn, src_key: bytes, sub_keys: list[bytes], suite: str) -> None:
    """Relay process: see the module docstring. Over ``conn``: sends ("ready", port), receives
    the subscribers' [(ip, port)], sends ("armed",); then on "snap" / "stop" replies (cpu_s,
    monotonic_s, in_pkts, out_pkts, unprotect_fail, protect_fail, send_errors, sys_s); exits
    after "stop"."""
    import pylibsrtp

    ffi, C = _mmsg()
    sffi, slib = pylibsrtp.ffi, pylibsrtp.lib
    unprotect, protect, memmove = slib.srtp_unprotect, slib.srtp_protect, ffi.memmove
    n_subs = len(sub_keys)
    rx_sock = _udp_socket(timeout_s=RECV_TIMEOUT_S)
    tx_sock = _udp_socket()
    rx_fd, tx_fd = rx_sock.fileno(), tx_sock.fileno()
    keep: list[Any] = []  # keeps every cffi allocation alive

    rx_ctx_session = _srtp_session(src_key, False, suite)
    rx_ctx = rx_ctx_session._srtp[0]
    rx_buf = sffi.new("char[]", RX_BATCH * SLOT_BYTES)
    rx_view = sffi.buffer(rx_buf)
    rx_iov = ffi.new("struct iovec[]", RX_BATCH)
    rx_msgs = ffi.new("struct mmsghdr[]", RX_BATCH)
    rx_slots = []
    for i in range(RX_BATCH):
        rx_iov[i].iov_base = rx_buf + i * SLOT_BYTES
        rx_iov[i].iov_len = SLOT_BYTES
        rx_msgs[i].msg_hdr.msg_iov = rx_iov + i
        rx_msgs[i].msg_hdr.msg_iovlen = 1
        rx_slots.append((rx_buf + i * SLOT_BYTES, i * SLOT_BYTES))

    tx_sessions = [_srtp_session(k, True, suite) for k in sub_keys]
    tx_ctx = [s._srtp[0] for s in tx_sessions]
    conn.send(("ready", rx_sock.getsockname()[1]))
    sub_addrs = conn.recv()
    addrs = ffi.new("struct sockaddr_in[]", n_subs)
    for j, (ip, port) in enumerate(sub_addrs):
        addrs[j].sin_family = socket.AF_INET
        addrs[j].sin_port = socket.htons(port)
        addrs[j].sin_addr = int.from_bytes(socket.inet_aton(ip), sys.byteorder)
    addr_len = ffi.sizeof("struct sockaddr_in")
    # One output slot set per ingress stream: slot j always goes to subscriber j, so only the
    # payload, and iov_len when the protected length changes, are written per packet.
    streams: dict[int, tuple[list, Any, Any, list]] = {}
    for s, ssrc in enumerate(SOURCE_SSRCS):
        buf = sffi.new("char[]", n_subs * SLOT_BYTES)
        view = sffi.buffer(buf)
        iov = ffi.new("struct iovec[]", n_subs)
        msgs = ffi.new("struct mmsghdr[]", n_subs)
        outs = []
        for j in range(n_subs):
            slot = buf + j * SLOT_BYTES
            iov[j].iov_base = slot
            msgs[j].msg_hdr.msg_name = addrs + j
            msgs[j].msg_hdr.msg_namelen = addr_len
            msgs[j].msg_hdr.msg_iov = iov + j
            msgs[j].msg_hdr.msg_iovlen = 1
            outs.append((tx_ctx[j], slot, j * SLOT_BYTES, _sub_ssrc(j, s), _sub_seq_offset(j, s)))
        streams[ssrc] = (outs, view, iov, msgs, [-1])
        keep += [buf, iov, msgs]

    in_pkts = out_pkts = unprotect_fail = protect_fail = send_errors = 0
    len_p = sffi.new("int *")
    unpack_hdr, pack_hdr = _SEQ_TS_SSRC.unpack_from, _SEQ_TS_SSRC.pack_into
    monotonic = time.monotonic
    get_stream = streams.get
    recvmmsg, sendmmsg = C.recvmmsg, C.sendmmsg

    def snapshot():
        return (_cpu_s(), monotonic(), in_pkts, out_pkts, unprotect_fail, protect_fail, send_errors,
                _sys_s())

    conn.send(("armed",))
    next_poll = 0.0
    while True:
        n = recvmmsg(rx_fd, rx_msgs, RX_BATCH, MSG_WAITFORONE, ffi.NULL)
        now = monotonic()
        if now >= next_poll:
            next_poll = now + RECV_TIMEOUT_S
            if conn.poll():
                cmd = conn.recv()
                conn.send(snapshot())
                if cmd == "stop":
                    break
        if n <= 0:
            continue
        in_pkts += n
        for i in range(n):
            buf, off = rx_slots[i]
            len_p[0] = rx_msgs[i].msg_len
            if unprotect(rx_ctx, buf, len_p):
                unprotect_fail += 1
                continue
            plen = len_p[0]
            seq, ts, ssrc = unpack_hdr(rx_view, off + 2)
            stream = get_stream(ssrc)
            if stream is None:
                continue
            outs, view, iov, msgs, cur_len = stream
            for ctx, slot, soff, ossrc, seq_off in outs:
                memmove(slot, buf, plen)
                pack_hdr(view, soff + 2, (seq + seq_off) & 0xFFFF, ts, ossrc)
                len_p[0] = plen
                if protect(ctx, slot, len_p):
                    protect_fail += 1
            olen = len_p[0]
            if olen != cur_len[0]:  # all outputs of one packet have the same protected length
                for j in range(n_subs):
                    iov[j].iov_len = olen
                cur_len[0] = olen
            sent = 0
            while sent < n_subs:
                r = sendmmsg(tx_fd, msgs + sent, min(MAX_SEND_BATCH, n_subs - sent), 0)
                if r <= 0:
                    send_errors += 1
                    break
                sent += r
            out_pkts += sent
    rx_sock.close()
    tx_sock.close()


# ---------------------------------------------------------------------------------- source


def _source_main(conn, src_key: bytes | None, suite: str | None, video_pps: int, audio_pps: int,
                 video_bytes: int, audio_bytes: int, pts: tuple[int, int] = SOURCE_PTS,
                 video_fps: float | None = None) -> None:
    """Source process (also the plain-RTP feed of benchmarks/janus_peer.py).

    Sends ("ready",), waits for (start_ns, stop_ns, ((video_ip, port), (audio_ip, port)));
    between the two monotonic times sends video and audio RTP, evenly paced (or, with
    ``video_fps``, video in back-to-back bursts of one frame's packets), each to its address: SRTP with ``src_key`` when ``suite`` is given, else plain RTP. Payload: one VP8
    payload-descriptor byte (0x10), then ``_PAYLOAD_STAMP`` (packet index, CLOCK_REALTIME send
    time in ns), then zeros to the packet size. Through ``conn``: "count" replies (video_sent,
    audio_sent) so far; "stop" ends early. At the end replies (video_sent, audio_sent,
    late_max_ms).
    """
    session = _srtp_session(src_key, True, suite) if suite else None
    sock = _udp_socket()
    conn.send(("ready",))
    start_ns, stop_ns, dests = conn.recv()
    dests = [tuple(d) for d in dests]
    sizes = (video_bytes, audio_bytes)
    periods = (1e9 / video_pps if video_pps > 0 else None, 1e9 / audio_pps if audio_pps > 0 else None)
    pads = [bytes(max(0, size - STAMP_OFFSET - _PAYLOAD_STAMP.size)) for size in sizes]
    counts = [0, 0]
    due = [start_ns if p else None for p in periods]
    late_max_ns = 0
    ts_audio = 0
    next_poll_ns = 0
    while True:
        live = [d for d in due if d is not None]
        if not live:
            break
        nxt = min(live)
        if nxt >= stop_ns:
            break
        now = time.monotonic_ns()
        if now >= next_poll_ns:
            next_poll_ns = now + 50_000_000
            if conn.poll():
                cmd = conn.recv()
                if cmd == "stop":
                    break
                conn.send((counts[0], counts[1]))  # "count"
        if nxt > now:
            time.sleep(min(nxt - now, 50_000_000) / 1e9)
            continue
        s = 0 if due[0] == nxt else 1
        late_max_ns = max(late_max_ns, now - nxt)
        idx = counts[s]
        if s == 0:
            ts = (now // 100_000 * 9) & 0xFFFFFFFF  # 90 kHz clock
        else:
            ts = ts_audio
            ts_audio = (ts_audio + 960) & 0xFFFFFFFF
        send_ns = time.time_ns()  # the receivers' kernel receive stamps are CLOCK_REALTIME
        packet = (_RTP_HEADER.pack(0x80, pts[s], idx & 0xFFFF, ts, SOURCE_SSRCS[s])
                  + b"\x10" + _PAYLOAD_STAMP.pack(idx, send_ns) + pads[s])
        sock.sendto(session.protect(packet) if session else packet, dests[s])
        counts[s] = idx + 1
        if s == 0 and video_fps:  # packet idx + 1 belongs to frame (idx + 1) * fps // pps
            due[s] = start_ns + int((idx + 1) * video_fps // video_pps * 1e9 / video_fps)
        else:
            due[s] = start_ns + int((idx + 1) * periods[s])
    sock.close()
    conn.send((counts[0], counts[1], late_max_ns / 1e6))


# ---------------------------------------------------------------------------------- sink


def _sink_main(conn, subs: list[tuple[int, bytes]], suite: str, verify: bool) -> None:
    """Sink process for subscribers ``subs`` [(index, key)]: sends ("ready", port), receives
    ``measure_from_ns`` (CLOCK_REALTIME; latency samples count from then); counts per
    (subscriber, stream) until "stop", then replies a dict of per-(subscriber, stream) lists and
    totals.

    The socket is read without blocking, sleeping ``SINK_POLL_S`` after a short batch: nobody
    waits on it, so the relay's sends do not pay for waking the sink (as with a NIC), and the
    latency is taken from the kernel's receive stamp (SO_TIMESTAMPNS), not from when we read.
    """
    import pylibsrtp

    srtp_error = pylibsrtp.Error
    ffi, C = _mmsg()
    sock = _udp_socket()
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    fd = sock.fileno()
    buf = ffi.new("char[]", SINK_BATCH * SLOT_BYTES)
    view = ffi.buffer(buf)
    cmsg_bytes = 32  # CMSG_SPACE(sizeof(struct timespec)): the kernel leaves msg_controllen at 32
    cbuf = ffi.new("char[]", SINK_BATCH * cmsg_bytes)
    cview = ffi.buffer(cbuf)
    iov = ffi.new("struct iovec[]", SINK_BATCH)
    msgs = ffi.new("struct mmsghdr[]", SINK_BATCH)
    for i in range(SINK_BATCH):
        iov[i].iov_base = buf + i * SLOT_BYTES
        iov[i].iov_len = SLOT_BYTES
        msgs[i].msg_hdr.msg_iov = iov + i
        msgs[i].msg_hdr.msg_iovlen = 1
        msgs[i].msg_hdr.msg_control = cbuf + i * cmsg_bytes
        msgs[i].msg_hdr.msg_controllen = cmsg_bytes
    # flat per-(subscriber, stream) state, indexed k = 2 * position + stream
    slot_of: dict[int, int] = {}
    expect: list[int] = []
    offsets: list[int] = []
    sessions = []
    for pos, (j, key) in enumerate(subs):
        session = _srtp_session(key, False, suite)
        for s in (0, 1):
            slot_of[_sub_ssrc(j, s)] = 2 * pos + s
            offsets.append(_sub_seq_offset(j, s))
            expect.append(_sub_seq_offset(j, s))  # the source's first packet has index 0
            sessions.append(session)
    m = len(expect)
    received = [0] * m
    gaps = [0] * m  # packets skipped over (lost), by sequence number
    backwards = [0] * m  # packets older than the last one (reordered or duplicated)
    unknown = auth_fail = wrong_payload = decrypted = no_stamp = 0
    latencies_us: list[int] = []
    fail_reasons: dict[str, int] = {}
    sample_mask = 0 if verify else LATENCY_SAMPLE_MASK
    unpack_hdr, unpack_stamp = _SEQ_SKIP_SSRC.unpack_from, _PAYLOAD_STAMP.unpack_from
    unpack_cmsg = _CMSG_TIMESPEC.unpack_from
    get_slot = slot_of.get
    recvmmsg = C.recvmmsg
    monotonic = time.monotonic
    sleep = time.sleep
    conn.send(("ready", sock.getsockname()[1]))
    measure_from_ns = conn.recv()
    next_poll = 0.0
    stopping = False
    while True:
        n = recvmmsg(fd, msgs, SINK_BATCH, MSG_DONTWAIT, ffi.NULL)
        if n <= 0 and stopping:  # told to stop and the socket is drained
            break
        if n < SINK_BATCH and not stopping:
            now = monotonic()
            if now >= next_poll:
                next_poll = now + RECV_TIMEOUT_S
                if conn.poll() and conn.recv() == "stop":
                    stopping = True
                    continue
            sleep(SINK_POLL_S)
        if n <= 0:
            continue
        for i in range(n):
            off = i * SLOT_BYTES
            seq, ssrc = unpack_hdr(view, off + 2)
            k = get_slot(ssrc)
            if k is None:
                unknown += 1
                continue
            received[k] += 1
            d = (seq - expect[k]) & 0xFFFF
            if d == 0:
                expect[k] = (seq + 1) & 0xFFFF
            elif d < 0x8000:
                gaps[k] += d
                expect[k] = (seq + 1) & 0xFFFF
            else:
                backwards[k] += 1
            if seq & sample_mask == 0 or received[k] == 1:  # the first one sets libsrtp's ROC
                try:
                    clear = sessions[k].unprotect(view[off:off + msgs[i].msg_len])
                except (srtp_error, ValueError) as exc:
                    auth_fail += 1
                    fail_reasons[str(exc)] = fail_reasons.get(str(exc), 0) + 1
                    continue
                decrypted += 1
                index, send_ns = unpack_stamp(clear, STAMP_OFFSET)
                if (index + offsets[k] - seq) & 0xFFFF:
                    wrong_payload += 1
                if send_ns >= measure_from_ns:
                    level, kind, sec, nsec = unpack_cmsg(cview, i * cmsg_bytes)
                    if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET:
                        latencies_us.append((sec * 1_000_000_000 + nsec - send_ns) // 1000)
                    else:
                        no_stamp += 1
    sock.close()
    conn.send({
        "subscribers": [j for j, _ in subs], "received": received, "gaps": gaps,
        "backwards": backwards, "unknown_ssrc": unknown, "auth_fail": auth_fail,
        "wrong_payload": wrong_payload, "decrypted": decrypted, "latencies_us": latencies_us,
        "no_stamp": no_stamp, "cpu_s": _cpu_s(), "fail_reasons": fail_reasons,
    })


# ---------------------------------------------------------------------------------- driver


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _stop(procs: list) -> None:
    for p in procs:
        p.join(timeout=3)
    for p in procs:
        if p.is_alive():
            p.kill()  # by PID (Process.kill -> SIGKILL to p.pid)
            p.join(timeout=3)


def run_bare_relay(n_subscribers: int, seconds: float, video_pps: int = 104, audio_pps: int = 50,
                   video_bytes: int = 1200, audio_bytes: int = 100, *, warmup_s: float = 1.0,
                   n_sinks: int | None = None, verify: bool = False,
                   pin_relay_cpu: int | None = None,
                   srtp_profile: str = "AES_CM_128_HMAC_SHA1_80",
                   video_fps: float | None = None) -> dict:
    """Run the bare relay once with ``n_subscribers`` for ``seconds`` (after ``warmup_s``).

    Packet sizes are RTP bytes before SRTP (the wire adds the auth tag: 10 bytes for
    ``srtp_profile`` AES_CM_128_HMAC_SHA1_80, 16 for the AEAD_AES_*_GCM ones; pick the suite
    the SFU under comparison negotiates). ``verify=True`` makes the sinks decrypt every packet
    with the subscriber's key and check it is the right one (the default decrypts 1 in 32, for
    latency). ``pin_relay_cpu`` pins the relay process to that CPU. ``video_fps`` sends video in
    bursts of one frame's packets at that frame rate instead of evenly paced packets. ``n_sinks`` defaults to 1
    up to 200 subscribers, else 2.

    Returns a dict:
      cpu_us_per_pkt    relay CPU (user+system, getrusage) per output packet over the window, µs
      out_per_cpu_s     output packets per relay CPU-second (1e6 / cpu_us_per_pkt)
      out_pps, in_pps   relay output / input packets per wall second over the window
      relay_cpu_pct     relay CPU / wall over the window, % of one core
      relay_sys_share   the system-time share of that CPU (syscalls and loopback delivery)
      loss              1 - packets the sinks got / (packets sent x n_subscribers), whole run
      lat_p50_ms, lat_p99_ms   source send -> kernel receive stamp at the sink (SO_TIMESTAMPNS),
                        sampled packets sent after the warm-up, ms
      subscribers_complete     subscribers that got every packet of both streams, in order
      sent_video, sent_audio, received, gaps, backwards, unknown_ssrc, auth_fail (sink-side
      SRTP failures), wrong_payload, unprotect_fail / protect_fail / send_errors (relay-side),
      sink_cpu_s, source_late_max_ms, n_subscribers, seconds (the window, measured).
    Raises ValueError for a non-positive ``n_subscribers`` or ``seconds`` or an unknown
    ``srtp_profile``; RuntimeError when a
    process does not start.
    """
    if not isinstance(n_subscribers, int) or n_subscribers < 1:
        raise ValueError("n_subscribers: must be a positive int")
    if not seconds > 0:
        raise ValueError("seconds: must be > 0")
    ctx = mp.get_context("spawn")  # no fork: the caller may run Ray or other threads
    if n_sinks is None:
        n_sinks = 1 if n_subscribers <= 200 else 2
    n_sinks = max(1, min(n_sinks, n_subscribers))
    key_len = _srtp_profile(srtp_profile)[1]
    src_key = os.urandom(key_len)
    sub_keys = [os.urandom(key_len) for _ in range(n_subscribers)]
    procs: list = []
    conns: dict[str, Any] = {}
    try:
        def start(name, target, *args):
            here, there = ctx.Pipe()
            p = ctx.Process(target=target, args=(there,) + args, name=f"bare-{name}", daemon=True)
            p.start()
            procs.append(p)
            conns[name] = here
            return here

        def ready(name, timeout=60.0):
            c = conns[name]
            if not c.poll(timeout):
                raise RuntimeError(f"bare relay: {name} process did not start")
            return c.recv()

        shares = [[(j, sub_keys[j]) for j in range(k, n_subscribers, n_sinks)]
                  for k in range(n_sinks)]
        for k in range(n_sinks):  # spawn everything at once, then wire it up through the pipes
            start(f"sink{k}", _sink_main, shares[k], srtp_profile, verify)
        relay = start("relay", _relay_main, src_key, sub_keys, srtp_profile)
        source = start("source", _source_main, src_key, srtp_profile, video_pps, audio_pps,
                       video_bytes, audio_bytes, SOURCE_PTS, video_fps)
        sink_ports = [ready(f"sink{k}")[1] for k in range(n_sinks)]
        relay_port = ready("relay")[1]
        relay.send([("127.0.0.1", sink_ports[j % n_sinks]) for j in range(n_subscribers)])
        ready("relay")
        ready("source")
        if pin_relay_cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(procs[n_sinks].pid, {pin_relay_cpu})
        start_ns = time.monotonic_ns() + int(0.2e9)
        measure_from_ns = start_ns + int(warmup_s * 1e9)
        stop_ns = measure_from_ns + int(seconds * 1e9)
        for k in range(n_sinks):
            conns[f"sink{k}"].send(time.time_ns() + measure_from_ns - time.monotonic_ns())
        source.send((start_ns, stop_ns, [("127.0.0.1", relay_port)] * 2))

        def wait_until(t_ns):
            d = (t_ns - time.monotonic_ns()) / 1e9
            if d > 0:
                time.sleep(d)

        def snap(cmd):
            relay.send(cmd)
            if not relay.poll(10):
                raise RuntimeError("bare relay: relay process does not answer")
            return relay.recv()

        wait_until(measure_from_ns)
        a = snap("snap")
        wait_until(stop_ns)
        b = snap("snap")
        if not source.poll(10):
            raise RuntimeError("bare relay: source process does not answer")
        sent_video, sent_audio, late_max_ms = source.recv()
        time.sleep(0.5)  # drain: let the last packets through relay and sinks
        final = snap("stop")
        sinks = []
        for k in range(n_sinks):
            c = conns[f"sink{k}"]
            c.send("stop")
            if not c.poll(10):
                raise RuntimeError(f"bare relay: sink{k} process does not answer")
            sinks.append(c.recv())
    finally:
        _stop(procs)

    d_cpu, d_t, d_in, d_out = b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3]
    per_sub_expected = (sent_video, sent_audio)
    received = gaps = backwards = complete = 0
    lat: list[int] = []
    for r in sinks:
        for pos, _j in enumerate(r["subscribers"]):
            ok = True
            for s in (0, 1):
                k = 2 * pos + s
                received += r["received"][k]
                gaps += r["gaps"][k]
                backwards += r["backwards"][k]
                if (r["received"][k] != per_sub_expected[s] or r["gaps"][k] or r["backwards"][k]):
                    ok = False
            complete += ok
        lat += r["latencies_us"]
    expected = (sent_video + sent_audio) * n_subscribers
    p50, p99 = _percentile(lat, 0.5), _percentile(lat, 0.99)
    return {
        "n_subscribers": n_subscribers,
        "seconds": round(d_t, 3),
        "cpu_us_per_pkt": d_cpu * 1e6 / d_out if d_out else None,
        "out_per_cpu_s": d_out / d_cpu if d_cpu > 0 else None,
        "out_pps": d_out / d_t if d_t > 0 else 0.0,
        "in_pps": d_in / d_t if d_t > 0 else 0.0,
        "relay_cpu_pct": 100.0 * d_cpu / d_t if d_t > 0 else 0.0,
        "relay_sys_share": (b[7] - a[7]) / d_cpu if d_cpu > 0 else None,
        "loss": 1.0 - received / expected if expected else None,
        "lat_p50_ms": p50 / 1000 if p50 is not None else None,
        "lat_p99_ms": p99 / 1000 if p99 is not None else None,
        "latency_samples": len(lat),
        "subscribers_complete": complete,
        "sent_video": sent_video,
        "sent_audio": sent_audio,
        "received": received,
        "gaps": gaps,
        "backwards": backwards,
        "unknown_ssrc": sum(r["unknown_ssrc"] for r in sinks),
        "auth_fail": sum(r["auth_fail"] for r in sinks),
        "auth_fail_reasons": {k: sum(r["fail_reasons"].get(k, 0) for r in sinks)
                              for k in {k for r in sinks for k in r["fail_reasons"]}},
        "wrong_payload": sum(r["wrong_payload"] for r in sinks),
        "decrypted": sum(r["decrypted"] for r in sinks),
        "unprotect_fail": final[4],
        "protect_fail": final[5],
        "send_errors": final[6],
        "sink_cpu_s": round(sum(r["cpu_s"] for r in sinks), 3),
        "source_late_max_ms": round(late_max_ms, 3),
    }


# ---------------------------------------------------------------------------------- CLI


def summarize(runs: list[dict], keys: tuple[str, ...]) -> dict[str, tuple | None]:
    """{key: (min, median, max)} over ``runs`` for each numeric ``key`` (None when absent)."""
    out: dict[str, tuple | None] = {}
    for key in keys:
        vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        out[key] = (min(vals), statistics.median(vals), max(vals)) if vals else None
    return out


SUMMARY_KEYS = ("cpu_us_per_pkt", "out_per_cpu_s", "out_pps", "relay_cpu_pct", "loss",
                "lat_p50_ms", "lat_p99_ms")


def print_summary(title: str, n: int, runs: list[dict], keys: tuple[str, ...] = SUMMARY_KEYS) -> None:
    """Print one ``min / median / max`` line per key for the runs at fan-out ``n``."""
    print(f"{title} N={n} ({len(runs)} runs): min / median / max")
    for key, mmm in summarize(runs, keys).items():
        if mmm is None:
            print(f"  {key:16s} -")
        elif key == "loss":
            print(f"  {key:16s} " + " / ".join(f"{100 * v:.3f} %" for v in mmm))
        elif max(abs(v) for v in mmm) >= 1000:
            print(f"  {key:16s} " + " / ".join(f"{v:,.0f}" for v in mmm))
        else:
            print(f"  {key:16s} " + " / ".join(f"{v:.2f}" for v in mmm))


def main(argv: list[str] | None = None) -> int:
    """CLI: runs are interleaved over the fan-outs; prints min/median/max per fan-out."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subscribers", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--video-pps", type=int, default=104)
    ap.add_argument("--audio-pps", type=int, default=50)
    ap.add_argument("--pin-relay-cpu", type=int, default=None)
    ap.add_argument("--video-fps", type=float, default=None,
                    help="send video in frame bursts at this rate (default: evenly paced)")
    ap.add_argument("--json", help="write every run's dict to this file")
    args = ap.parse_args(argv)
    results: dict[int, list[dict]] = {n: [] for n in args.subscribers}
    for run in range(args.runs):
        for n in args.subscribers:
            r = run_bare_relay(n, args.seconds, args.video_pps, args.audio_pps,
                               warmup_s=args.warmup, pin_relay_cpu=args.pin_relay_cpu,
                               video_fps=args.video_fps)
            results[n].append(r)
            print(f"run {run + 1} N={n}: {r['cpu_us_per_pkt']:.2f} us/pkt, "
                  f"{r['out_pps']:,.0f} out pps, relay {r['relay_cpu_pct']:.0f} % CPU, "
                  f"loss {100 * r['loss']:.3f} %, p50/p99 {r['lat_p50_ms']} / {r['lat_p99_ms']} ms",
                  flush=True)
    for n in args.subscribers:
        print_summary("bare relay", n, results[n])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(n): rs for n, rs in results.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
