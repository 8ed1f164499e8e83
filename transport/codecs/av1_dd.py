"""The Dependency Descriptor RTP header extension (AV1 RTP specification, Appendix A;
URI ``https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension``).

Used with AV1 (and by Chrome with VP8/VP9/H264 SVC) so that an SFU can select layers without
looking into the payload. Every packet carries the mandatory fields (3 bytes: start/end of
frame, frame dependency template id, frame number); a keyframe's packets also carry the
*template dependency structure* that the later packets refer to by template id. The structure
is per stream state: keep the :class:`DependencyStructure` returned with a keyframe and pass it
to the next calls.

Syntax (A.2): bits are read MSB first; ``f(n)`` is an n-bit unsigned value, ``ns(n)`` a
non-symmetric value in 0..n-1 (A.8.2; AV1 bitstream spec 4.10.7). Limits from libwebrtc: at
most 64 templates, 4 spatial and 8 temporal ids, 32 decode targets.

Decode target indications (DTI, A.8.3): 0 not present, 1 discardable, 2 switch, 3 required.
"""

from __future__ import annotations

from raysfu.transport.errors import PacketParseError

__all__ = [
    "DTI_NOT_PRESENT",
    "DTI_DISCARDABLE",
    "DTI_SWITCH",
    "DTI_REQUIRED",
    "DependencyStructure",
    "parse_dependency_descriptor",
]

DTI_NOT_PRESENT = 0
DTI_DISCARDABLE = 1
DTI_SWITCH = 2
DTI_REQUIRED = 3

MAX_TEMPLATES = 64
MAX_SPATIAL_IDS = 4
MAX_TEMPORAL_IDS = 8

# Indices into the tuple returned by parse_dependency_descriptor.
(START_OF_FRAME, END_OF_FRAME, TEMPLATE_ID, FRAME_NUMBER, SPATIAL_ID, TEMPORAL_ID, DTIS, FDIFFS,
 CHAIN_FDIFFS, ACTIVE_DECODE_TARGETS, STRUCTURE, NEW_STRUCTURE) = range(12)


class _BitReader:
    """MSB-first reader over one big integer (the extension value is at most 255 bytes)."""

    __slots__ = ("_v", "_left")

    def __init__(self, value: bytes | bytearray, bit_pos: int) -> None:
        self._v = int.from_bytes(value, "big")
        self._left = len(value) * 8 - bit_pos

    def f(self, n: int) -> int:
        """Read an n-bit unsigned value (A.8.1 ``f(n)``)."""
        left = self._left - n
        if left < 0:
            raise PacketParseError("av1_dd", "truncated dependency descriptor")
        self._left = left
        return (self._v >> left) & ((1 << n) - 1)

    def ns(self, n: int) -> int:
        """Read a non-symmetric unsigned value in 0..n-1 (A.8.2 ``ns(n)``): with
        ``w = bit_length(n)`` and ``m = 2**w - n``, values below ``m`` take w-1 bits, the
        others w bits (``(v << 1) - m + extra_bit``)."""
        w = n.bit_length()
        m = (1 << w) - n
        v = self.f(w - 1)
        if v < m:
            return v
        return (v << 1) - m + self.f(1)


class DependencyStructure:
    """A template dependency structure (A.8.3 ``template_dependency_structure``), per stream.

    Attributes (tuples, indexed by template index / decode target / chain / spatial id):

    - ``template_id_offset``: template id of template index 0 (0..63);
    - ``num_decode_targets`` (``DtCnt``), ``num_chains`` (0 = no chains);
    - ``template_spatial_ids``, ``template_temporal_ids``: per template;
    - ``template_dtis``: per template, a tuple of ``num_decode_targets`` DTIs (0..3);
    - ``template_fdiffs``: per template, the frame number differences of its references;
    - ``template_chain_fdiffs``: per template, ``num_chains`` chain differences;
    - ``decode_target_protected_by_chain``: per decode target, its chain index;
    - ``decode_target_spatial_ids``, ``decode_target_max_temporal_ids``: per decode target,
      the highest layers it contains (A.8.3 ``decode_target_layers``);
    - ``resolutions``: ``(width, height)`` per spatial layer, () when not sent;
    - ``num_spatial_layers``, ``num_temporal_layers``.
    """

    __slots__ = (
        "template_id_offset",
        "num_decode_targets",
        "num_chains",
        "template_spatial_ids",
        "template_temporal_ids",
        "template_dtis",
        "template_fdiffs",
        "template_chain_fdiffs",
        "decode_target_protected_by_chain",
        "decode_target_spatial_ids",
        "decode_target_max_temporal_ids",
        "resolutions",
        "num_spatial_layers",
        "num_temporal_layers",
    )

    def __init__(
        self,
        template_id_offset: int,
        num_decode_targets: int,
        template_spatial_ids: tuple,
        template_temporal_ids: tuple,
        template_dtis: tuple,
        template_fdiffs: tuple,
        num_chains: int = 0,
        decode_target_protected_by_chain: tuple = (),
        template_chain_fdiffs: tuple | None = None,
        resolutions: tuple = (),
    ) -> None:
        n = len(template_spatial_ids)
        if not 1 <= n <= MAX_TEMPLATES:
            raise ValueError(f"template_spatial_ids must hold 1..{MAX_TEMPLATES} templates, got {n}")
        if not 0 <= template_id_offset < 64:
            raise ValueError(f"template_id_offset must be 0..63, got {template_id_offset!r}")
        if not 1 <= num_decode_targets <= 32:
            raise ValueError(f"num_decode_targets must be 1..32, got {num_decode_targets!r}")
        if len(template_temporal_ids) != n or len(template_dtis) != n or len(template_fdiffs) != n:
            raise ValueError(
                "template_temporal_ids, template_dtis, template_fdiffs must have one entry per template"
            )
        if any(len(d) != num_decode_targets for d in template_dtis):
            raise ValueError("template_dtis entries must have num_decode_targets values")
        if template_chain_fdiffs is None:
            template_chain_fdiffs = ((),) * n
        self.template_id_offset = template_id_offset
        self.num_decode_targets = num_decode_targets
        self.num_chains = num_chains
        self.template_spatial_ids = tuple(template_spatial_ids)
        self.template_temporal_ids = tuple(template_temporal_ids)
        self.template_dtis = tuple(tuple(d) for d in template_dtis)
        self.template_fdiffs = tuple(tuple(d) for d in template_fdiffs)
        self.template_chain_fdiffs = tuple(tuple(c) for c in template_chain_fdiffs)
        self.decode_target_protected_by_chain = tuple(decode_target_protected_by_chain)
        self.resolutions = tuple(resolutions)
        self.num_spatial_layers = max(self.template_spatial_ids) + 1
        self.num_temporal_layers = max(self.template_temporal_ids) + 1
        dt_sids = []
        dt_tids = []
        for dt in range(num_decode_targets):
            s = t = 0
            for k in range(n):
                if self.template_dtis[k][dt]:
                    if self.template_spatial_ids[k] > s:
                        s = self.template_spatial_ids[k]
                    if self.template_temporal_ids[k] > t:
                        t = self.template_temporal_ids[k]
            dt_sids.append(s)
            dt_tids.append(t)
        self.decode_target_spatial_ids = tuple(dt_sids)
        self.decode_target_max_temporal_ids = tuple(dt_tids)

    @property
    def num_templates(self) -> int:
        """Number of templates (``TemplateCnt``)."""
        return len(self.template_spatial_ids)

    def template_index(self, template_id: int) -> int:
        """Index of the template with frame dependency template id ``template_id`` (A.8.4),
        or -1 when the structure has no such template."""
        k = (template_id + 64 - self.template_id_offset) % 64
        return k if k < len(self.template_spatial_ids) else -1

    def decode_target(self, spatial_id: int, temporal_id: int) -> int:
        """Index of the decode target whose layers are exactly (``spatial_id``,
        ``temporal_id``), or -1 (the usual LxTy structures have one per layer pair)."""
        for dt in range(self.num_decode_targets):
            if (
                self.decode_target_spatial_ids[dt] == spatial_id
                and self.decode_target_max_temporal_ids[dt] == temporal_id
            ):
                return dt
        return -1

    def __repr__(self) -> str:
        return (
            f"DependencyStructure(templates={self.num_templates}, decode_targets={self.num_decode_targets}, "
            f"chains={self.num_chains}, L{self.num_spatial_layers}T{self.num_temporal_layers}, "
            f"resolutions={self.resolutions})"
        )


def _read_structure(r: _BitReader) -> DependencyStructure:
    """A.8.3 ``template_dependency_structure()``."""
    offset = r.f(6)
    dt_cnt = r.f(5) + 1
    sids: list[int] = []
    tids: list[int] = []
    sid = tid = 0
    while True:  # template_layers()
        if len(sids) == MAX_TEMPLATES:
            raise PacketParseError("av1_dd", "more than 64 templates")
        sids.append(sid)
        tids.append(tid)
        idc = r.f(2)
        if idc == 3:
            break
        if idc == 1:
            tid += 1
            if tid >= MAX_TEMPORAL_IDS:
                raise PacketParseError("av1_dd", "too many temporal layers")
        elif idc == 2:
            tid = 0
            sid += 1
            if sid >= MAX_SPATIAL_IDS:
                raise PacketParseError("av1_dd", "too many spatial layers")
    n = len(sids)
    dtis = tuple(tuple(r.f(2) for _ in range(dt_cnt)) for _ in range(n))  # template_dtis()
    fdiffs = []
    for _ in range(n):  # template_fdiffs()
        diffs = []
        while r.f(1):
            diffs.append(r.f(4) + 1)
        fdiffs.append(tuple(diffs))
    chain_cnt = r.ns(dt_cnt + 1)  # template_chains()
    protected_by: tuple = ()
    chain_fdiffs: tuple = ((),) * n
    if chain_cnt:
        protected_by = tuple(r.ns(chain_cnt) for _ in range(dt_cnt))
        chain_fdiffs = tuple(tuple(r.f(4) for _ in range(chain_cnt)) for _ in range(n))
    resolutions: tuple = ()
    if r.f(1):  # resolutions_present_flag -> render_resolutions()
        resolutions = tuple((r.f(16) + 1, r.f(16) + 1) for _ in range(sid + 1))
    return DependencyStructure(
        offset, dt_cnt, tuple(sids), tuple(tids), dtis, tuple(fdiffs), chain_cnt, protected_by,
        chain_fdiffs, resolutions,
    )


def parse_dependency_descriptor(
    value: bytes | bytearray, structure: DependencyStructure | None = None
) -> tuple:
    """Parse one dependency descriptor extension value (A.8, ``dependency_descriptor(sz)``).

    ``structure`` is the stream's latest :class:`DependencyStructure` (None before the first).
    Returns ``(start_of_frame, end_of_frame, template_id, frame_number, spatial_id,
    temporal_id, dtis, fdiffs, chain_fdiffs, active_decode_targets, structure,
    new_structure)``:

    - ``start_of_frame``, ``end_of_frame``: bools; ``template_id`` 0..63; ``frame_number``
      0..65535 (wraps);
    - ``spatial_id``, ``temporal_id``: the frame's layers (from its template);
    - ``dtis``: a DTI per decode target; ``fdiffs``: frame number differences of the frames
      this one references; ``chain_fdiffs``: a difference per chain (template values unless
      the packet sends custom ones);
    - ``active_decode_targets``: bitmask (bit i = decode target i) when the packet sets it (all
      targets when it attaches a structure), else None: keep the last one per stream;
    - ``structure``: the structure in effect (the attached one, else the one passed in);
      ``new_structure``: True when this packet attached it (store it for the next packets).

    Raises :class:`PacketParseError` ("av1_dd") when the value is shorter than 3 bytes or
    truncated, when no structure is known, or when the template id is not in the structure.
    """
    n = len(value)
    if n < 3:
        raise PacketParseError("av1_dd", "dependency descriptor shorter than 3 bytes")
    b0 = value[0]
    template_id = b0 & 0x3F
    frame_number = (value[1] << 8) | value[2]
    active = None
    new = False
    if n == 3:  # no_extended_descriptor_fields()
        if structure is None:
            raise PacketParseError("av1_dd", "no dependency structure known")
        k = (template_id + 64 - structure.template_id_offset) % 64
        if k >= len(structure.template_spatial_ids):
            raise PacketParseError("av1_dd", "template id not in the dependency structure")
        return (
            b0 >= 0x80, b0 & 0x40 != 0, template_id, frame_number, structure.template_spatial_ids[k],
            structure.template_temporal_ids[k], structure.template_dtis[k], structure.template_fdiffs[k],
            structure.template_chain_fdiffs[k], None, structure, False,
        )
    r = _BitReader(value, 24)
    flags = r.f(5)  # extended_descriptor_fields()
    if flags & 0x10:
        structure = _read_structure(r)
        active = (1 << structure.num_decode_targets) - 1
        new = True
    if structure is None:
        raise PacketParseError("av1_dd", "no dependency structure known")
    if flags & 0x08:
        active = r.f(structure.num_decode_targets)
    k = (template_id + 64 - structure.template_id_offset) % 64
    if k >= len(structure.template_spatial_ids):
        raise PacketParseError("av1_dd", "template id not in the dependency structure")
    if flags & 0x04:  # frame_dtis()
        dtis = tuple(r.f(2) for _ in range(structure.num_decode_targets))
    else:
        dtis = structure.template_dtis[k]
    if flags & 0x02:  # frame_fdiffs()
        diffs = []
        size = r.f(2)
        while size:
            diffs.append(r.f(4 * size) + 1)
            size = r.f(2)
        fdiffs = tuple(diffs)
    else:
        fdiffs = structure.template_fdiffs[k]
    if flags & 0x01:  # frame_chains()
        chains = tuple(r.f(8) for _ in range(structure.num_chains))
    else:
        chains = structure.template_chain_fdiffs[k]
    return (
        b0 >= 0x80, b0 & 0x40 != 0, template_id, frame_number, structure.template_spatial_ids[k],
        structure.template_temporal_ids[k], dtis, fdiffs, chains, active, structure, new,
    )
