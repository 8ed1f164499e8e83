"""Sans-I/O protocol machinery: RTP/RTCP, STUN/ICE-lite, DTLS, SRTP, ORTC negotiation.

Nothing in this package opens a socket, reads a clock or imports asyncio or ray: every
time-dependent call takes ``now_ms``.
"""
