"""Read what a damaged MCAP file still holds, in file order, up to the damage.

A recording cut short (power loss, full disk, killed recorder) has no summary, footer or
``metadata.yaml``, and its last chunk is incomplete; indexed readers (rosbags, mcap's seeking reader)
refuse such a file. MCAP is a flat sequence of length-prefixed records, so walking it from the start
recovers every schema, channel and message before the first incomplete record, including the
complete records inside a partially written uncompressed chunk (``ros2 bag record`` does not
compress chunks by default). Compressed chunks are recovered when complete.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"\x89MCAP0\r\n"
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_FOOTER, OP_DATA_END = 0x03, 0x04, 0x05, 0x06, 0x02, 0x0F


class Truncated(Exception):
    """The bytes end inside a record."""


@dataclass
class SalvagedChannel:
    id: int
    topic: str
    msgtype: str  # the schema name, e.g. sensor_msgs/msg/Image
    encoding: str  # message encoding, 'cdr' for ROS 2
    schema: bytes  # the message definition (ros2msg text)


@dataclass
class SalvagedMessage:
    channel_id: int
    log_time_ns: int
    data: bytes


class _Cursor:
    def __init__(self, buf: memoryview):
        self.buf, self.pos = buf, 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise Truncated
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return bytes(self.take(self.u32())).decode("utf-8", "replace")


def _records(buf: memoryview, partial_ok: bool) -> Iterator[tuple[int, memoryview]]:
    """(opcode, body) of consecutive records; stops quietly at an incomplete one if ``partial_ok``."""
    cur = _Cursor(buf)
    while cur.pos < len(buf):
        try:
            op = cur.take(1)[0]
            body = cur.take(cur.u64())
        except Truncated:
            if partial_ok:
                return
            raise
        yield op, body


class McapSalvage:
    """Schemas, channels and messages of one MCAP file, read sequentially; ``complete`` says whether
    the file ended cleanly (footer found) and ``error`` why reading stopped otherwise."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.channels: dict[int, SalvagedChannel] = {}
        self.complete = False
        self.error = ""

    def messages(self) -> Iterator[SalvagedMessage]:
        data = memoryview(self.path.read_bytes())
        if bytes(data[: len(MAGIC)]) != MAGIC:
            raise ValueError(f"{self.path} is not an MCAP file (magic bytes missing)")
        self.complete, self.error = False, ""
        schemas: dict[int, tuple[str, bytes]] = {}
        pos = len(MAGIC)
        try:
            while pos < len(data):
                if pos + 9 > len(data):
                    raise Truncated
                op, length = data[pos], struct.unpack("<Q", data[pos + 1 : pos + 9])[0]
                body = data[pos + 9 : pos + 9 + length]
                pos += 9 + length
                if op == OP_FOOTER:
                    self.complete = True
                    return
                if len(body) < length:  # the record the recorder was writing: keep what is whole
                    if op == OP_CHUNK:
                        yield from self._handle(op, body, schemas)
                    raise Truncated
                yield from self._handle(op, body, schemas)
            raise Truncated
        except Truncated:
            self.error = f"file ends at byte {len(data)} before its footer (recording cut short?)"
        except (ValueError, struct.error, UnicodeDecodeError) as exc:
            self.error = f"damaged record before byte {pos}: {exc}"

    def _handle(self, op: int, body: memoryview, schemas: dict[int, tuple[str, bytes]]
                ) -> Iterator[SalvagedMessage]:
        cur = _Cursor(body)
        if op == OP_SCHEMA:
            sid, name, _enc = cur.u16(), cur.string(), cur.string()
            schemas[sid] = (name, bytes(cur.take(cur.u32())))
        elif op == OP_CHANNEL:
            cid, sid, topic, enc = cur.u16(), cur.u16(), cur.string(), cur.string()
            name, schema = schemas.get(sid, ("", b""))
            self.channels[cid] = SalvagedChannel(cid, topic, name, enc, schema)
        elif op == OP_MESSAGE:
            cid, _seq, log_time, _pub = cur.u16(), cur.u32(), cur.u64(), cur.u64()
            yield SalvagedMessage(cid, log_time, bytes(body[cur.pos :]))
        elif op == OP_CHUNK:
            cur.u64(), cur.u64(), cur.u64(), cur.u32()  # start/end time, uncompressed size, crc
            compression = cur.string()
            length = cur.u64()
            inner = body[cur.pos : cur.pos + length]
            if compression:
                if len(inner) < length:
                    return  # a cut compressed chunk cannot be decoded
                inner = memoryview(_decompress(compression, bytes(inner)))
            for iop, ibody in _records(inner, partial_ok=True):
                yield from self._handle(iop, ibody, schemas)


def _decompress(compression: str, data: bytes) -> bytes:
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    raise ValueError(f"unsupported chunk compression '{compression}'")
