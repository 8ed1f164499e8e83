"""``python -m raysfu.demo [--host 127.0.0.1] [--port 8080] [--listen-ip IP] [--announced-address ADDR]
[--workers N] [--max-consumers-per-router N] [--max-transports-per-router N] [--debug-hooks]``:
start (or join, with ``RAY_ADDRESS``) Ray, one worker per CPU, and serve the demo rooms."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os

# An embedded local Ray: advertise 127.0.0.1 only, no token auth, no usage stats (unless set).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from .server import serve  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the demo server until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m raysfu.demo",
        description="Serve the raysfu demo room (starts an embedded local Ray if none runs).")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    parser.add_argument("--listen-ip", default=None,
                        help="IP the WebRTC transports bind (default: --host, or 127.0.0.1 for 0.0.0.0)")
    parser.add_argument("--announced-address", default=None,
                        help="address announced in ICE candidates (public IP or host name behind NAT)")
    parser.add_argument("--debug-hooks", action="store_true",
                        help="enable test hooks: join's debugReceiveLoss and /debug/rooms/{roomId}")
    parser.add_argument("--workers", type=int, default=None,
                        help="WorkerActors for the rooms (default: one per CPU of the Ray cluster)")
    parser.add_argument("--max-consumers-per-router", type=int, default=500,
                        help="a room opens a router on another worker past this many consumers (default 500)")
    parser.add_argument("--max-transports-per-router", type=int, default=None,
                        help="... or past this many transports (default: no limit)")
    parser.add_argument("--log-level", default="INFO", help="Python log level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    listen_ip = args.listen_ip or (args.host if args.host not in ("0.0.0.0", "", "::") else "127.0.0.1")

    def ready(url: str) -> None:
        print(f"raysfu demo ready: {url}  (open {url}/?room=demo&peer=alice)", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host=args.host, port=args.port, listen_ip=listen_ip,
                          announced_address=args.announced_address, debug_hooks=args.debug_hooks,
                          ready=ready, num_workers=args.workers,
                          max_consumers_per_router=args.max_consumers_per_router,
                          max_transports_per_router=args.max_transports_per_router))


if __name__ == "__main__":
    main()
