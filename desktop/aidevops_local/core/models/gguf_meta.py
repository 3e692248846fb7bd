"""Header-only GGUF reading: metadata and tensor layout without loading the vocabulary into objects.

`gguf.GGUFReader` parses every array (3 s for a 49k vocabulary, 13 s for 262k), far too slow for a listing
or a pre-flight check, so this walks the header over an mmap and keeps large arrays as their length only.
Every count and length is checked against the file's size, so a malformed header ends in `CorruptModel`,
never in an unbounded allocation. Parsed headers are cached by (path, size, mtime): a listing or a server
start after the first pays nothing.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ..system.errors import CorruptModel, ModelNotFound

GGUF_MAGIC = b"GGUF"
# GGUF value types (gguf spec): scalar sizes in bytes; 8 = string, 9 = array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_ARRAY_KEEP = 64  # string arrays longer than this (the vocabulary) are kept as their length only
MAX_NUMERIC_ARRAY_KEEP = 4096  # per-layer numbers (head counts, window patterns) are kept whole
SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")

# ggml tensor types: (elements per block, bytes per block), as in ggml.h / gguf-py's GGML_QUANT_SIZES.
# A small table rather than the gguf package: importing it (and numpy) costs more than a whole header read.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}

# general.file_type (llama_ftype) -> the quant name people use in file names.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    n_bytes: int = 0  # from the type table; for a type this table does not know, from the next offset

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def type_name(self) -> str:
        return GGML_TYPES.get(self.ggml_type, (f"type{self.ggml_type}",))[0]


@dataclass
class GgufHeader:
    path: Path
    version: int
    metadata: dict = field(default_factory=dict)  # long string arrays appear as ("array", length)
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0
    file_size: int = 0  # for a split model read with read_model: all parts together
    parts: tuple[Path, ...] = ()

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_value(self, key: str, default=None):
        """A `<architecture>.<key>` metadata value, e.g. arch_value("block_count")."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def tensor_bytes(self) -> int:
        """The weights' size in memory: every tensor's bytes (without header and padding)."""
        return sum(t.n_bytes for t in self.tensors)

    @property
    def quant(self) -> str:
        """The quantization people name the file by (Q4_K_M, Q8_0, ...), from general.file_type, else the
        most common weight type."""
        ftype = self.metadata.get("general.file_type")
        if isinstance(ftype, int) and ftype in FILE_TYPES:
            return FILE_TYPES[ftype]
        weights: dict[str, int] = {}
        for t in self.tensors:
            if len(t.shape) >= 2:
                weights[t.type_name] = weights.get(t.type_name, 0) + t.n_bytes
        return max(weights, key=weights.get) if weights else ""


class _Cursor:
    def __init__(self, buf, size: int, path: Path):
        self.buf, self.size, self.pos, self.path = buf, size, 0, path

    def fail(self, what: str) -> CorruptModel:
        return CorruptModel(
            f"{self.path.name} is not a valid GGUF file: {what} (at byte {self.pos}).",
            hint="The file is damaged or incomplete. Delete it and download it again.",
        )

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise self.fail("the header runs past the end of the file")
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.unpack("<Q")
        if length > self.size - self.pos:
            raise self.fail(f"a string claims {length} bytes")
        return self.take(length).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        if self.pos + 8 > self.size:
            raise self.fail("the header runs past the end of the file")
        (length,) = struct.unpack_from("<Q", self.buf, self.pos)
        if length > self.size - self.pos - 8:
            raise self.fail(f"a string claims {length} bytes")
        self.pos += 8 + length

    def value(self, vtype: int, depth: int = 0):
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            if depth > 2:  # the spec allows nesting; nothing real nests deeper, a fuzzer would recurse forever
                raise self.fail("arrays nested too deeply")
            item_type, count = self.unpack("<I"), self.unpack("<Q")
            if count > self.size - self.pos:  # every item takes at least one byte
                raise self.fail(f"an array claims {count} items")
            if item_type in _SCALARS and count <= MAX_NUMERIC_ARRAY_KEEP:
                fmt = _SCALARS[item_type]
                return list(struct.unpack(f"<{count}{fmt[1]}", self.take(struct.calcsize(fmt) * count)))
            if count <= MAX_ARRAY_KEEP:
                return [self.value(item_type, depth + 1) for _ in range(count)]
            self.skip_array(item_type, count, depth)
            return ("array", count)
        raise self.fail(f"unknown value type {vtype}")

    def skip_array(self, item_type: int, count: int, depth: int) -> None:
        if item_type in _SCALARS:
            self.pos += struct.calcsize(_SCALARS[item_type]) * count
            if self.pos > self.size:
                raise self.fail("an array runs past the end of the file")
        elif item_type == _STRING:
            for _ in range(count):
                self.skip_string()
        else:
            for _ in range(count):
                self.value(item_type, depth + 1)


def read_header(path: Path, *, with_tensors: bool = True) -> GgufHeader:
    """Parse a GGUF file's header. Raises ModelNotFound or CorruptModel with a message a user can act on."""
    path = Path(path)
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except FileNotFoundError:
        raise ModelNotFound(
            f"Model file not found: {path}", hint="Check the path, or run `models` to list models."
        ) from None
    except IsADirectoryError:
        raise CorruptModel(f"{path} is a folder, not a GGUF file.", hint="Name the .gguf file inside it.") from None
    except OSError as exc:
        raise CorruptModel(f"Cannot read {path}: {exc.strerror}", hint="Check the file's permissions.") from exc
    with handle:
        if size < 24:
            raise CorruptModel(
                f"{path.name} is not a GGUF file: it is {size} bytes long.",
                hint="The file is empty or cut short. Delete it and download it again.",
            )
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(_Cursor(buf, size, path), with_tensors)


def _parse(cur: _Cursor, with_tensors: bool) -> GgufHeader:
    if cur.take(4) != GGUF_MAGIC:
        raise CorruptModel(
            f"{cur.path.name} is not a GGUF file (wrong magic bytes).",
            hint="Only .gguf models work with llama.cpp; convert the model or pick a GGUF file.",
        )
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise cur.fail(f"unsupported GGUF version {version}")
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    if n_tensors > cur.size // 24 or n_kv > cur.size // 12:  # each entry needs at least that many bytes
        raise cur.fail(f"absurd counts ({n_tensors} tensors, {n_kv} keys)")
    header = GgufHeader(path=cur.path, version=version, file_size=cur.size, parts=(cur.path,))
    for _ in range(n_kv):
        key = cur.string()
        header.metadata[key] = cur.value(cur.unpack("<I"))
    if not with_tensors:
        return header
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack("<I")
        if n_dims > 8:
            raise cur.fail(f"tensor {name!r} has {n_dims} dimensions")
        shape = tuple(cur.unpack("<Q") for _ in range(n_dims))
        header.tensors.append(TensorInfo(name, shape, cur.unpack("<I"), cur.unpack("<Q")))
    alignment = header.metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1):
        raise cur.fail(f"bad alignment {alignment!r}")
    header.data_offset = (cur.pos + alignment - 1) // alignment * alignment
    _size_tensors(header, cur)
    return header


def _size_tensors(header: GgufHeader, cur: _Cursor) -> None:
    """Each tensor's bytes, and a refusal when any of them runs past the end of the file (a cut download)."""
    data_size = cur.size - header.data_offset
    by_offset = sorted(header.tensors, key=lambda t: t.offset)
    for i, tensor in enumerate(by_offset):
        known = GGML_TYPES.get(tensor.ggml_type)
        if known:
            _, block, type_size = known
            elements = tensor.n_elements
            if tensor.shape and tensor.shape[0] % block:
                raise cur.fail(
                    f"tensor {tensor.name!r} has a row of {tensor.shape[0]} values, "
                    f"not a multiple of its block size {block}"
                )
            tensor.n_bytes = elements // block * type_size
        else:  # a type newer than this table: its extent is up to the next tensor
            following = by_offset[i + 1].offset if i + 1 < len(by_offset) else data_size
            tensor.n_bytes = max(0, following - tensor.offset)
        if tensor.offset + tensor.n_bytes > data_size:
            raise CorruptModel(
                f"{cur.path.name} is truncated: its tensor data runs past the end of the file.",
                hint="The download was cut short. Pull the model again (it resumes).",
            )


# ---- cache ------------------------------------------------------------------------------------------------

_CACHE: OrderedDict[tuple, GgufHeader] = OrderedDict()
_CACHE_MAX = 128
_CACHE_LOCK = threading.Lock()


def cached_header(path: Path) -> GgufHeader:
    """read_header, remembered per (path, size, mtime): a changed file is read again."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelNotFound(
            f"Model file not found: {path}", hint="Check the path, or run `models` to list models."
        ) from None
    except OSError as exc:
        raise CorruptModel(f"Cannot read {path}: {exc.strerror}", hint="Check the file's permissions.") from exc
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    header = read_header(path)
    with _CACHE_LOCK:
        _CACHE[key] = header
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return header


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


# ---- split models -----------------------------------------------------------------------------------------


def split_parts(path: Path) -> list[Path]:
    """All files of a split GGUF given any part (`name-00001-of-00003.gguf`), or [path] if not split."""
    path = Path(path)
    match = SPLIT_RE.match(path.name)
    if not match:
        return [path]
    count = int(match["count"])
    return [path.with_name(f"{match['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


def split_stem(name: str) -> str | None:
    """`Qwen3-32B-Q4_K_M` for `Qwen3-32B-Q4_K_M-00001-of-00002.gguf`; None for a file that is not a part."""
    match = SPLIT_RE.match(name)
    return match["stem"] if match else None


def read_model(path: Path) -> GgufHeader:
    """The model as one header: the first part's metadata with every part's tensors and the total size.
    Cached like cached_header."""
    parts = split_parts(path)
    missing = [p.name for p in parts if not p.exists()]
    if missing:
        raise ModelNotFound(
            f"Split model {parts[0].name} is missing part(s): {', '.join(missing)}",
            hint="Pull the model again to fetch the missing parts.",
        )
    headers = [cached_header(p) for p in parts]
    if len(headers) == 1:
        return headers[0]
    first = headers[0]
    return GgufHeader(
        path=first.path,
        version=first.version,
        metadata=first.metadata,
        tensors=[t for h in headers for t in h.tensors],
        data_offset=first.data_offset,
        file_size=sum(h.file_size for h in headers),
        parts=tuple(parts),
    )


def validate_gguf(path: Path) -> GgufHeader:
    """Pre-flight check before handing a file to llama-server: every part present and each header sane.
    Returns the model's header (for a split model: the first part's metadata with every part's tensors)."""
    return read_model(path)
