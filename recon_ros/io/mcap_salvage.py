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
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06


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


def _records(buf: memoryview) -> Iterator[tuple[int, memoryview]]:
    """(opcode, body) of the whole records in ``buf``, stopping at an incomplete one."""
    cur = _Cursor(buf)
    while cur.pos < len(buf):
        try:
            op = cur.take(1)[0]
            body = cur.take(cur.u64())
        except Truncated:
            return
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
        """Messages in file order. The file is read one record at a time (chunks are a few MB), so a
        large recording is never held in memory."""
        self.complete, self.error = False, ""
        schemas: dict[int, tuple[str, bytes]] = {}
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise ValueError(f"{self.path} is not an MCAP file (magic bytes missing)")
            try:
                while True:
                    head = f.read(9)
                    if len(head) < 9:
                        raise Truncated
                    op, length = head[0], struct.unpack("<Q", head[1:])[0]
                    body = memoryview(f.read(min(length, size - f.tell())))
                    if op == OP_FOOTER:
                        self.complete = True
                        return
                    # The record being written when the recording stopped: a chunk still holds whole
                    # records, anything else is lost.
                    if len(body) == length or op == OP_CHUNK:
                        yield from self._handle(op, body, schemas)
                    if len(body) < length:
                        raise Truncated
            except Truncated:
                self.error = f"file ends at byte {size} before its footer (recording cut short?)"
            except (ValueError, struct.error, UnicodeDecodeError) as exc:
                self.error = f"damaged record before byte {f.tell()}: {exc}"

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
            for iop, ibody in _records(inner):
                yield from self._handle(iop, ibody, schemas)


def _decompress(compression: str, data: bytes) -> bytes:
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    raise ValueError(f"unsupported chunk compression '{compression}'")
