"""What an Arrow IPC stream will decode to, read from its message headers before decoding.

A compressed Arrow body of a few kilobytes can decompress to gigabytes: pyarrow allocates each
buffer's declared decompressed length as it reads a batch. Each record batch message says, in
its flatbuffer header, how many rows it holds, the length of every field node and where every
buffer lies in the body; a compressed buffer starts with its decompressed length (int64, -1
when stored as is). ``measure`` adds these up for the whole stream without decompressing
anything, so a bomb is refused before it costs memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3  # org.apache.arrow.flatbuf.MessageHeader


class ArrowBoundsError(ValueError):
    """The stream's headers are unreadable (a malformed body)."""


@dataclass(frozen=True)
class Extent:
    """What a stream decodes to: rows of its record batches, the longest field node, bytes."""

    rows: int
    longest_node: int
    decoded_bytes: int


class _Table:
    """A flatbuffer table: just enough reading to follow Arrow's Message schema."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        (soffset,) = struct.unpack_from("<i", buf, pos)
        self.vtable = pos - soffset
        (self.vtable_size,) = struct.unpack_from("<H", buf, self.vtable)

    def _field(self, index: int) -> int | None:
        entry = 4 + 2 * index
        if entry + 2 > self.vtable_size:
            return None
        (offset,) = struct.unpack_from("<H", self.buf, self.vtable + entry)
        return self.pos + offset if offset else None

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        at = self._field(index)
        return default if at is None else int(struct.unpack_from(fmt, self.buf, at)[0])

    def table(self, index: int) -> _Table | None:
        at = self._field(index)
        if at is None:
            return None
        return _Table(self.buf, at + struct.unpack_from("<I", self.buf, at)[0])

    def structs(self, index: int, size: int) -> list[tuple[int, int]]:
        """A vector of structs of two int64 each (FieldNode, Buffer)."""
        at = self._field(index)
        if at is None:
            return []
        start = at + struct.unpack_from("<I", self.buf, at)[0]
        (count,) = struct.unpack_from("<I", self.buf, start)
        if start + 4 + count * size > len(self.buf):
            raise ArrowBoundsError("a vector runs past its message header")
        return [struct.unpack_from("<qq", self.buf, start + 4 + i * size) for i in range(count)]


def _batch(header: _Table, body: pa.Buffer) -> tuple[int, int, int]:
    """(rows, longest node, decoded bytes) of one RecordBatch header over its body."""
    rows = header.scalar(0, "<q")
    nodes = header.structs(1, 16)
    buffers = header.structs(2, 16)
    compressed = header.table(3) is not None
    view = memoryview(body)
    decoded = 0
    for offset, length in buffers:
        if offset < 0 or length < 0 or offset + length > len(view):
            raise ArrowBoundsError("a buffer lies outside its message body")
        if compressed and length >= 8:
            (declared,) = struct.unpack_from("<q", view, offset)
            decoded += length - 8 if declared == -1 else max(declared, 0)
        else:
            decoded += length
    longest = max((length for length, _nulls in nodes), default=0)
    return rows, max(longest, rows), decoded


def measure(body: bytes) -> Extent:
    """Rows, longest field node and decoded bytes of an Arrow IPC stream, without decoding."""
    import pyarrow as pa

    rows = longest = decoded = 0
    try:
        reader = pa.ipc.MessageReader.open_stream(pa.BufferReader(body))
        for message in reader:
            if message.type not in ("record batch", "dictionary"):
                continue
            meta = message.metadata.to_pybytes()
            root = _Table(meta, struct.unpack_from("<I", meta, 0)[0])
            kind = root.scalar(1, "<B")
            header = root.table(2)
            if header is not None and kind == _DICTIONARY_BATCH:
                header = header.table(1)
            if header is None or kind not in (_DICTIONARY_BATCH, _RECORD_BATCH):
                continue
            batch_rows, batch_longest, batch_bytes = _batch(header, message.body)
            rows += batch_rows if kind == _RECORD_BATCH else 0
            longest = max(longest, batch_longest)
            decoded += batch_bytes
    except (struct.error, IndexError) as exc:
        raise ArrowBoundsError(f"an Arrow message header is malformed: {exc}") from None
    return Extent(rows=rows, longest_node=longest, decoded_bytes=decoded)
