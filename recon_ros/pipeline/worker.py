"""InferenceWorker: runs the engine on its own thread behind a small bounded queue. No ROS here.

Camera callbacks must never wait for inference (a 300 ms depth step would back up every camera's
DDS queue and the images would arrive stale). So callbacks ``submit`` frame sets here and return at
once; when the queue is full the OLDEST pending frame set is dropped — the newest one is the most
useful to a robot — and its images are counted as ``queue_full`` in the shared drop counter.

Accounting: every submitted frame set ends up exactly once in ``processed``, ``failed``,
``dropped`` (queue_full), ``discarded`` (pending at ``stop``) or is still ``pending``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from recon_ros.pipeline.frames import DropCounter, FrameSet

LOG = logging.getLogger("recon_ros")
LATENCY_WINDOW = 256  # recent latencies kept for the status message (bounded memory)


class LockedDropCounter(DropCounter):
    """DropCounter shared by the callback thread (FrontEnd) and the worker thread (engine, queue).

    ``Counter[key] += n`` is a read-modify-write, so two threads can lose counts without a lock.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def add(self, reason: str, n: int = 1, message: str = "") -> None:
        with self._lock:
            super().add(reason, n, message)

    def total(self) -> int:
        with self._lock:
            return super().total()

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return super().as_dict()


class InferenceWorker:
    """One worker thread fed by a bounded queue of frame sets.

    Args:
        process_fn: called with each frame set on the worker thread (e.g. ``engine.process``).
        queue_size: frame sets that may wait; the oldest is dropped when a new one arrives on a full queue.
        drops: where dropped frame sets are counted (``queue_full``/``worker_error``/``worker_stopped``,
            n = images in the frame set).
        on_result: called on the worker thread with ``(frameset, result)`` when ``process_fn`` returns
            something other than None (publishing happens here, off the callback thread).
        clock_ns: "now" for the stamp-to-result latency; the node passes its ROS clock so the
            latency stays meaningful under ``use_sim_time``.
    """

    def __init__(
        self,
        process_fn: Callable[[FrameSet], Any],
        queue_size: int,
        drops: DropCounter,
        on_result: Callable[[FrameSet, Any], None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        name: str = "recon_inference",
        start: bool = True,
    ):
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.process_fn = process_fn
        self.queue_size = queue_size
        self.drops = drops
        self.on_result = on_result
        self.clock_ns = clock_ns
        self._queue: deque[FrameSet] = deque()
        self._cond = threading.Condition()
        # Held while process_fn runs: reset/save_map take it to touch the engine between frame sets.
        self._engine_lock = threading.RLock()
        self._busy = False
        self._stopping = False
        self.submitted = self.processed = self.failed = self.dropped = self.discarded = self.results = 0
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)  # image stamp -> result
        self.process_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)  # time inside process_fn
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        if start:
            self._thread.start()

    # ---- producer side (callback thread) ----------------------------------------------------
    def submit(self, frameset: FrameSet) -> bool:
        """Queue a frame set without blocking. Returns False if it was refused (worker stopped)."""
        with self._cond:
            if self._stopping:
                self.drops.add("worker_stopped", n=len(frameset.images), message="inference worker is stopped")
                self.discarded += 1
                self.submitted += 1
                return False
            self.submitted += 1
            while len(self._queue) >= self.queue_size:
                old = self._queue.popleft()
                self.dropped += 1
                self.drops.add(
                    "queue_full",
                    n=len(old.images),
                    message=f"inference slower than input: frame set @ {old.stamp_ns * 1e-9:.3f} s dropped "
                    f"(runtime.queue_size = {self.queue_size})",
                )
            self._queue.append(frameset)
            self._cond.notify()
        return True

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty and nothing is being processed; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the engine between two frame sets (services: reset, save_map)."""
        with self._engine_lock:
            yield

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread after the frame set in progress; pending ones are counted as ``worker_stopped``."""
        with self._cond:
            self._stopping = True
            while self._queue:
                fs = self._queue.popleft()
                self.discarded += 1
                self.drops.add("worker_stopped", n=len(fs.images), message="inference worker stopped")
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        """Counters and latency summary for the status message and diagnostics."""
        with self._cond:
            lat = sorted(self.latency_ms)
            proc = list(self.process_ms)
            return {
                "submitted": self.submitted,
                "processed": self.processed,
                "failed": self.failed,
                "dropped": self.dropped,
                "discarded": self.discarded,
                "pending": len(self._queue),
                "busy": self._busy,
                "results": self.results,
                "latency_ms_last": self.latency_ms[-1] if self.latency_ms else float("nan"),
                "latency_ms_p50": lat[len(lat) // 2] if lat else float("nan"),
                "latency_ms_max": lat[-1] if lat else float("nan"),
                "process_ms_mean": sum(proc) / len(proc) if proc else float("nan"),
            }

    # ---- consumer side (worker thread) ------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if self._stopping:
                    self._busy = False
                    self._cond.notify_all()
                    return
                fs = self._queue.popleft()
                self._busy = True
            try:
                self._handle(fs)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _handle(self, fs: FrameSet) -> None:
        t0 = time.perf_counter()
        try:
            with self._engine_lock:
                result = self.process_fn(fs)
                if result is not None and self.on_result is not None:
                    self.on_result(fs, result)
        except Exception as exc:  # the worker must survive any one bad frame set or publish error
            LOG.exception("inference worker: frame set @ %.3f s failed: %s", fs.stamp_ns * 1e-9, exc)
            self.drops.add("worker_error", n=len(fs.images), message=f"{type(exc).__name__}: {exc}")
            with self._cond:
                self.failed += 1
            return
        now = self.clock_ns()
        with self._cond:
            self.processed += 1
            self.results += result is not None
            self.process_ms.append((time.perf_counter() - t0) * 1e3)
            self.latency_ms.append((now - fs.stamp_ns) * 1e-6)
