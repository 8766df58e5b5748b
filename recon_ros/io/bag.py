"""rosbag2 reading and writing (mcap or sqlite3) through rosbags — no ROS installation needed."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from recon_ros.io.messages import MessageKit

LOG = logging.getLogger("recon_ros")


class BagError(RuntimeError):
    """The bag cannot be opened or read; the message names the file."""


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    raw: bytes | memoryview
    connection: Any


class BagReader:
    """Messages of a rosbag2 folder or single .mcap/.db3 file, in log-time order.

    Reading stops with a logged warning (not an exception) at a truncated or corrupt chunk, so a
    recording cut short by a power loss still yields everything before the damage.
    """

    def __init__(self, path: str | Path, kit: MessageKit):
        from rosbags.highlevel import AnyReader

        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        self.kit = kit
        self.truncated = False
        self.errors: list[str] = []
        try:
            self._reader = AnyReader([self.path], default_typestore=kit.typestore)
            self._reader.open()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            files = _mcap_files(self.path)
            if not files:
                hint = " (a damaged .db3 can be rescued with `sqlite3 FILE .recover`)" if "database" in reason else ""
                raise BagError(f"cannot open bag {self.path}: {reason}{hint}") from None
            # No index, footer or metadata.yaml: a recording cut short. Read its records in file order.
            self._reader = _SalvagedMcap(files, kit, self.errors)
            self.truncated = True
            msg = f"{self.path}: cannot be opened with its index ({reason}); reading its records in file order"
            self.errors.append(msg)
            LOG.warning(msg)

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        # Closing a damaged bag must not hide the original error.
        with contextlib.suppress(Exception):
            self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        return {t: info.msgtype for t, info in self._reader.topics.items()}

    def message_counts(self) -> dict[str, int]:
        return {t: int(info.msgcount) for t, info in self._reader.topics.items()}

    @property
    def connections(self) -> list[Any]:
        return list(self._reader.connections)

    def messages(self, topics: set[str] | None = None) -> Iterator[BagMessage]:
        conns = [c for c in self._reader.connections if topics is None or c.topic in topics]
        it = self._reader.messages(connections=conns)
        while True:
            try:
                conn, ts, raw = next(it)
            except StopIteration:
                return
            except Exception as exc:  # truncated chunk, bad CRC, sqlite corruption ...
                self.truncated = True
                msg = f"{self.path}: stopped reading at a damaged record ({type(exc).__name__}: {exc})"
                self.errors.append(msg)
                LOG.warning(msg)
                return
            yield BagMessage(conn.topic, conn.msgtype, ts, raw, conn)

    def deserialize(self, message: BagMessage) -> Any:
        return self._reader.deserialize(message.raw, message.msgtype)


def _mcap_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix == ".mcap" else []
    return sorted(path.glob("*.mcap"))


class _SalvagedMcap:
    """The subset of rosbags' AnyReader that BagReader uses, over :class:`McapSalvage` files."""

    def __init__(self, files: list[Path], kit: MessageKit, errors: list[str]):
        from recon_ros.io.mcap_salvage import McapSalvage

        self.kit, self.errors = kit, errors
        self.files = [McapSalvage(f) for f in files]
        counts: dict[str, int] = {}
        for f in self.files:  # first pass: channels and counts (messages are not kept)
            for m in f.messages():
                topic = f.channels[m.channel_id].topic
                counts[topic] = counts.get(topic, 0) + 1
        self._conns: dict[tuple[int, int], SimpleNamespace] = {}
        for i, f in enumerate(self.files):
            for ch in f.channels.values():
                self._conns[(i, ch.id)] = SimpleNamespace(
                    topic=ch.topic, msgtype=ch.msgtype, msgcount=counts.get(ch.topic, 0),
                    msgdef=SimpleNamespace(data=ch.schema.decode("utf-8", "replace")), digest="", ext=None,
                )
        self.topics = {c.topic: c for c in self._conns.values()}
        self.connections = list(self._conns.values())

    def messages(self, connections: list[Any]) -> Iterator[tuple[Any, int, bytes]]:
        wanted = {id(c) for c in connections}
        for i, f in enumerate(self.files):
            for m in f.messages():
                conn = self._conns.get((i, m.channel_id))
                if conn is not None and id(conn) in wanted:
                    yield conn, m.log_time_ns, m.data
            if f.error:
                msg = f"{f.path}: stopped reading: {f.error}"
                self.errors.append(msg)
                LOG.warning(msg)

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        return self.kit.typestore.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        pass


class BagWriter:
    """rosbag2 writer (mcap by default, version 8 so Humble and Jazzy can play it)."""

    def __init__(self, path: str | Path, kit: MessageKit, storage: str = "mcap", overwrite: bool = False):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise BagError(f"output bag {self.path} exists (pass --overwrite to replace it)")
            shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
        self.kit = kit
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
        self._writer = Writer(self.path, version=8, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[tuple[str, str], Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._writer.close()

    def _connection(self, topic: str, msgtype: str, source: Any = None) -> Any:
        key = (topic, msgtype)
        if key not in self._connections:
            kwargs: dict[str, Any] = {"typestore": self.kit.typestore}
            if source is not None and msgtype not in self.kit.typestore.types:
                # Unknown type: copy its definition from the input so the output stays self-describing.
                kwargs = {"msgdef": source.msgdef.data, "rihs01": source.digest}
            qos = getattr(getattr(source, "ext", None), "offered_qos_profiles", ()) if source is not None else ()
            if qos and not isinstance(qos, str):
                kwargs["offered_qos_profiles"] = qos
            self._connections[key] = self._writer.add_connection(topic, msgtype, **kwargs)
        return self._connections[key]

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        msgtype = msg.__msgtype__
        data = self.kit.typestore.serialize_cdr(msg, msgtype)
        self._writer.write(self._connection(topic, msgtype), int(stamp_ns), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write_raw(self, message: BagMessage) -> None:
        """Copy a message from a reader byte for byte (input topics pass through)."""
        conn = self._connection(message.topic, message.msgtype, message.connection)
        self._writer.write(conn, int(message.log_time_ns), bytes(message.raw))
        self.counts[message.topic] = self.counts.get(message.topic, 0) + 1
