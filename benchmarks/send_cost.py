"""Kernel + Python cost of sending one 1,200-byte UDP datagram on loopback, four ways.

Is batching the worker's sends (``sendmmsg``) or connecting its sockets worth building? This
sends ``--packets`` datagrams round-robin to ``--n`` sink sockets (drained by a process on
CPU 0 with recvmmsg) from this process pinned to CPU 1, and prints the user and system CPU µs
per datagram (getrusage of this process) of:

- ``one-sendto``: one socket, ``sendto(view, addr)`` per datagram (what the bare relay's
  destinations see, one packet at a time);
- ``many-sendto``: one socket per destination (the worker: one socket per WebRtcTransport);
- ``one-mmsg64``: one socket, ``sendmmsg`` of 64 (``benchmarks/_mmsg.MmsgSender``, the copy
  into its arena included);
- ``conn-send``: one ``connect()``-ed socket per destination, ``send(view)``.

Loopback charges the delivery into the sink's socket to the sender (research/mediasoup-perf.md,
"Caveats"), for every variant alike. Usage (Linux)::

    .venv/bin/python -m benchmarks.send_cost [--n 250] [--packets 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import selectors
import socket
import statistics
import time

from benchmarks._mmsg import MmsgReceiver, MmsgSender

PAYLOAD = memoryview(bytearray(1200))


def _sink(n: int, ports_q, stop) -> None:
    os.sched_setaffinity(0, {0})
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ, MmsgReceiver(s, 64, 2048))
    ports_q.put([s.getsockname()[1] for s in socks])
    deadline = time.monotonic() + 600  # bounded even if the parent dies
    while not stop.is_set() and time.monotonic() < deadline:
        for key, _ in sel.select(0.1):
            while key.data.recv():
                pass


def _udp(dest=None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    if dest is not None:
        s.connect(dest)
    return s


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=250, help="destinations (sink sockets)")
    ap.add_argument("--packets", type=int, default=200_000, help="datagrams per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per variant (interleaved)")
    args = ap.parse_args()
    n, packets = args.n, args.packets
    os.sched_setaffinity(0, {1})
    ports_q, stop = mp.Queue(), mp.Event()
    sink = mp.Process(target=_sink, args=(n, ports_q, stop), daemon=True)
    sink.start()
    try:
        dests = [("127.0.0.1", p) for p in ports_q.get(timeout=30)]
        one = _udp()
        many = [_udp() for _ in range(n)]
        conn = [_udp(d) for d in dests]
        mmsg = MmsgSender(one, 64, 2048)

        def pace(i: int) -> None:  # let the sink keep up: no variant measures drops
            if i % 2000 == 1999:
                time.sleep(0.002)

        def one_sendto() -> None:
            send = one.sendto
            for i in range(packets):
                send(PAYLOAD, dests[i % n])
                pace(i)

        def many_sendto() -> None:
            sends = [s.sendto for s in many]
            for i in range(packets):
                j = i % n
                sends[j](PAYLOAD, dests[j])
                pace(i)

        def one_mmsg64() -> None:
            add = mmsg.add
            for i in range(packets):
                add(PAYLOAD, dests[i % n])
                pace(i)
            mmsg.flush()

        def conn_send() -> None:
            sends = [s.send for s in conn]
            for i in range(packets):
                sends[i % n](PAYLOAD)
                pace(i)

        variants = {"one-sendto": one_sendto, "many-sendto": many_sendto,
                    "one-mmsg64": one_mmsg64, "conn-send": conn_send}
        figures: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                u0, s0 = _cpu()
                fn()
                u1, s1 = _cpu()
                figures[name].append(((u1 - u0) * 1e6 / packets, (s1 - s0) * 1e6 / packets))
                time.sleep(0.3)
        print(f"N={n}, {packets} datagrams of {len(PAYLOAD)} B per measurement, {args.rounds} rounds; "
              f"CPU µs per datagram min / median / max (mmsg drops: {mmsg.dropped})")
        print(f"{'variant':<12} {'user':>20} {'system':>20} {'total':>20}")
        for name, rows in figures.items():
            cols = []
            for vals in ([u for u, _ in rows], [s for _, s in rows], [u + s for u, s in rows]):
                vals = sorted(vals)
                cols.append(f"{vals[0]:.2f} / {statistics.median(vals):.2f} / {vals[-1]:.2f}")
            print(f"{name:<12} {cols[0]:>20} {cols[1]:>20} {cols[2]:>20}")
    finally:
        stop.set()
        sink.join(5)
        if sink.is_alive():
            sink.kill()


if __name__ == "__main__":
    main()
