"""Batched UDP I/O for the load generator: Linux ``recvmmsg(2)`` / ``sendmmsg(2)`` through cffi.

cffi's ABI mode (``ffi.dlopen(None)`` opens the C library already loaded in the process), so no
compiler is needed. The layouts below are glibc's on 64-bit Linux (``struct msghdr`` is 56 bytes,
``struct mmsghdr`` 64). Every buffer is allocated once: a batch costs one syscall and no Python
objects besides the ints the caller reads (shared/research/perf-limits.md §3: this reaches C
parity for plain forwarding).

```python
rx = MmsgReceiver(sock, batch=64)
n = rx.recv()                      # 0 when nothing is queued (non-blocking)
for i in range(n):
    off, length, port = i * rx.slot_bytes, rx.length(i), rx.source_port(i)
    data = rx.view[off:off + length]
tx = MmsgSender(sock, batch=64)
tx.add(b"...", ("127.0.0.1", 40000))
tx.flush()                         # returns datagrams sent
```
"""

from __future__ import annotations

import errno
import socket
import struct
import sys

import cffi

__all__ = ["AVAILABLE", "MSG_DONTWAIT", "MmsgReceiver", "MmsgSender"]

_CDEF = """
typedef unsigned int socklen_t;
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; socklen_t msg_namelen;
    struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen;
    int msg_flags;
};
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
struct timespec { long tv_sec; long tv_nsec; };
int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags, struct timespec *timeout);
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
"""

#: MSG_DONTWAIT on Linux: return EAGAIN instead of blocking.
MSG_DONTWAIT = 0x40
#: SO_TIMESTAMPNS / SCM_TIMESTAMPNS (asm-generic, x86, arm): kernel receive time, CLOCK_REALTIME
SO_TIMESTAMPNS = 35
_NAME_BYTES = 32  # room for a sockaddr_in6 (28 bytes)
_CTRL_BYTES = 64  # one cmsghdr (16) + struct timespec (16), with room to spare
_CMSG_TS = struct.Struct("=QiiqQ")  # cmsg_len, cmsg_level, cmsg_type, tv_sec, tv_nsec
_SOCKADDR_IN = struct.Struct("=HH4s8x")  # family (host order), port (network order), addr

ffi = cffi.FFI()
ffi.cdef(_CDEF)
try:
    _libc = ffi.dlopen(None) if sys.platform.startswith("linux") else None
    AVAILABLE = _libc is not None and ffi.sizeof("struct mmsghdr") == 64
except OSError:  # pragma: no cover - no C library to open
    _libc = None
    AVAILABLE = False


def _check() -> None:
    if not AVAILABLE:
        raise OSError("recvmmsg/sendmmsg via cffi need Linux with glibc's 64-bit layout")


def _arena(batch: int, slot_bytes: int) -> tuple:
    """Preallocated cffi memory for ``batch`` messages of ``slot_bytes``: ``(buf, buf_view,
    names, names_view, iovecs, mmsghdrs)``. Raises ``ValueError`` for a batch < 1 or slots < 64
    bytes, ``OSError`` where recvmmsg/sendmmsg are unavailable."""
    _check()
    if batch < 1 or slot_bytes < 64:
        raise ValueError("batch must be >= 1 and slot_bytes >= 64")
    buf = ffi.new("unsigned char[]", batch * slot_bytes)
    names = ffi.new("unsigned char[]", batch * _NAME_BYTES)
    return (buf, memoryview(ffi.buffer(buf)), names, memoryview(ffi.buffer(names)),
            ffi.new("struct iovec[]", batch), ffi.new("struct mmsghdr[]", batch))


class MmsgReceiver:
    """Receive up to ``batch`` datagrams per ``recvmmsg`` call into one preallocated buffer.

    Datagram ``i`` of the last call sits at ``view[i * slot_bytes : i * slot_bytes + length(i)]``
    (``view`` is a writable ``memoryview`` over the whole buffer); ``slot_bytes`` is each slot's
    capacity (longer datagrams are truncated by the kernel). ``source_port(i)`` reads the IPv4
    source port; ``source(i)`` gives ``(ip, port)``. Raises ``OSError`` on socket errors other
    than EAGAIN/EINTR.

    With ``timestamps`` the socket gets ``SO_TIMESTAMPNS`` and ``timestamp_ns(i)`` gives the
    kernel's receive time of datagram ``i`` (CLOCK_REALTIME ns, as ``time.time_ns()``), so a
    late read does not count as network latency.
    """

    __slots__ = (
        "_buf",
        "_ctrl",
        "_iov",
        "_msgs",
        "_names",
        "batch",
        "ctrl",
        "fd",
        "names",
        "slot_bytes",
        "sock",
        "timestamps",
        "view",
    )

    def __init__(self, sock: socket.socket, batch: int = 64, slot_bytes: int = 2048,
                 timestamps: bool = False) -> None:
        self._buf, self.view, self._names, self.names, self._iov, self._msgs = _arena(batch, slot_bytes)
        self.sock = sock
        self.fd = sock.fileno()
        self.batch = batch
        self.slot_bytes = slot_bytes
        self.timestamps = timestamps
        if timestamps:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._ctrl = ffi.new("unsigned char[]", batch * _CTRL_BYTES)
            self.ctrl = memoryview(ffi.buffer(self._ctrl))
        else:
            self._ctrl = self.ctrl = None
        for i in range(batch):
            self._iov[i].iov_base = self._buf + i * slot_bytes
            self._iov[i].iov_len = slot_bytes
            hdr = self._msgs[i].msg_hdr
            hdr.msg_name = self._names + i * _NAME_BYTES
            hdr.msg_namelen = _NAME_BYTES
            hdr.msg_iov = self._iov + i
            hdr.msg_iovlen = 1
            if timestamps:
                hdr.msg_control = self._ctrl + i * _CTRL_BYTES
                hdr.msg_controllen = _CTRL_BYTES

    def recv(self, flags: int = MSG_DONTWAIT) -> int:
        """One ``recvmmsg``; returns the number of datagrams received (0 if none queued)."""
        n = _libc.recvmmsg(self.fd, self._msgs, self.batch, flags, ffi.NULL)
        if n < 0:
            err = ffi.errno
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(err, f"recvmmsg: {errno.errorcode.get(err, err)}")
        msgs = self._msgs
        if self.timestamps:
            for i in range(n):
                hdr = msgs[i].msg_hdr
                hdr.msg_namelen = _NAME_BYTES
                hdr.msg_controllen = _CTRL_BYTES
        else:
            for i in range(n):
                msgs[i].msg_hdr.msg_namelen = _NAME_BYTES
        return n

    def timestamp_ns(self, i: int) -> int:
        """Kernel receive time of datagram ``i`` (CLOCK_REALTIME ns); 0 when not available."""
        if self.ctrl is None:
            return 0
        length, level, kind, sec, nsec = _CMSG_TS.unpack_from(self.ctrl, i * _CTRL_BYTES)
        if length < 32 or level != socket.SOL_SOCKET or kind != SO_TIMESTAMPNS:
            return 0
        return sec * 1_000_000_000 + nsec

    def length(self, i: int) -> int:
        """Bytes of datagram ``i`` of the last call."""
        return self._msgs[i].msg_len

    def lengths(self, n: int) -> list[int]:
        """Bytes of the first ``n`` datagrams of the last call."""
        msgs = self._msgs
        return [msgs[i].msg_len for i in range(n)]

    def source_port(self, i: int) -> int:
        """Source port of datagram ``i`` (IPv4 or IPv6: the port is at the same offset)."""
        off = i * _NAME_BYTES + 2
        names = self.names
        return (names[off] << 8) | names[off + 1]

    def source(self, i: int) -> tuple[str, int]:
        """``(ip, port)`` of datagram ``i`` (IPv4)."""
        _family, port, addr = _SOCKADDR_IN.unpack_from(self.names, i * _NAME_BYTES)
        return socket.inet_ntoa(addr), socket.ntohs(port)


class MmsgSender:
    """Stage up to ``batch`` datagrams and send them with one ``sendmmsg`` per ``flush()``.

    ``add(data, addr)`` copies ``data`` (at most ``slot_bytes``) into the next slot; it flushes by
    itself when the batch is full. IPv4 destinations only. A datagram the kernel refuses with
    EAGAIN (send buffer full) is counted in ``dropped``; other errors raise ``OSError``.
    """

    __slots__ = (
        "_addr_cache",
        "_buf",
        "_count",
        "_iov",
        "_msgs",
        "_names",
        "_names_view",
        "_view",
        "batch",
        "dropped",
        "fd",
        "sent",
        "slot_bytes",
        "sock",
    )

    def __init__(self, sock: socket.socket, batch: int = 64, slot_bytes: int = 2048) -> None:
        self._buf, self._view, self._names, self._names_view, self._iov, self._msgs = _arena(batch, slot_bytes)
        self.sock = sock
        self.fd = sock.fileno()
        self.batch = batch
        self.slot_bytes = slot_bytes
        for i in range(batch):
            self._iov[i].iov_base = self._buf + i * slot_bytes
            hdr = self._msgs[i].msg_hdr
            hdr.msg_name = self._names + i * _NAME_BYTES
            hdr.msg_namelen = 16
            hdr.msg_iov = self._iov + i
            hdr.msg_iovlen = 1
        self._count = 0
        self._addr_cache: dict[tuple[str, int], bytes] = {}
        self.sent = 0
        self.dropped = 0

    def add(self, data: bytes | bytearray | memoryview, addr: tuple[str, int]) -> None:
        """Stage one datagram for ``addr`` = ``(ipv4, port)``. Raises ValueError if too long."""
        n = len(data)
        if n > self.slot_bytes:
            raise ValueError(f"data: {n} bytes exceed slot_bytes {self.slot_bytes}")
        i = self._count
        off = i * self.slot_bytes
        self._view[off:off + n] = data
        self._iov[i].iov_len = n
        name = self._addr_cache.get(addr)
        if name is None:
            name = _SOCKADDR_IN.pack(socket.AF_INET, socket.htons(addr[1]), socket.inet_aton(addr[0]))
            self._addr_cache[addr] = name
        noff = i * _NAME_BYTES
        self._names_view[noff:noff + 16] = name
        self._count = i + 1
        if self._count == self.batch:
            self.flush()

    def flush(self) -> int:
        """Send every staged datagram; returns how many the kernel took."""
        total = self._count
        done = 0
        while done < total:
            n = _libc.sendmmsg(self.fd, self._msgs + done, total - done, 0)
            if n < 0:
                err = ffi.errno
                if err == errno.EINTR:
                    continue
                if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                    self.dropped += total - done
                    break
                if err == errno.ECONNREFUSED:  # an ICMP error of an earlier send: skip one
                    done += 1
                    self.dropped += 1
                    continue
                self._count = 0
                raise OSError(err, f"sendmmsg: {errno.errorcode.get(err, err)}")
            done += n
        self._count = 0
        sent = min(done, total)
        self.sent += sent
        return sent

    @property
    def pending(self) -> int:
        """Datagrams staged and not yet flushed."""
        return self._count
