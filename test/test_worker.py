"""InferenceWorker: bounded queue, oldest dropped, counts add up, exceptions don't kill the thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from recon_ros.pipeline.frames import CameraImage, DropCounter, FrameSet
from recon_ros.pipeline.worker import InferenceWorker, LockedDropCounter


def frameset(i: int, cameras: int = 4) -> FrameSet:
    rgb = np.zeros((2, 2, 3), np.uint8)
    images = {f"c{k}": CameraImage(f"c{k}", i, rgb, np.eye(3)) for k in range(cameras)}
    return FrameSet(stamp_ns=i, images=images)


class Gate:
    """process_fn that blocks until released, recording what it saw."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.seen: list[int] = []

    def __call__(self, fs: FrameSet) -> int:
        self.started.set()
        self.release.wait(5)
        self.seen.append(fs.stamp_ns)
        return fs.stamp_ns


def test_submit_never_blocks_and_drops_the_oldest() -> None:
    gate = Gate()
    drops = DropCounter()
    results: list[int] = []
    w = InferenceWorker(gate, queue_size=2, drops=drops, on_result=lambda fs, r: results.append(r))
    try:
        w.submit(frameset(0))
        assert gate.started.wait(2)  # frame set 0 is now being processed, the queue is empty
        t0 = time.perf_counter()
        for i in range(1, 6):
            assert w.submit(frameset(i, cameras=3))
        assert time.perf_counter() - t0 < 0.1, "submit() blocked on a full queue"
        assert w.pending == 2
        # 1, 2, 3 were the oldest pending when newer ones came: dropped, counted with their image count
        assert drops.counts["queue_full"] == 3 * 3
        assert w.dropped == 3
        gate.release.set()
        assert w.wait_idle(5)
    finally:
        w.stop()
    assert gate.seen == [0, 4, 5]
    assert results == [0, 4, 5]
    s = w.stats()
    assert s["submitted"] == 6
    assert s["submitted"] == s["processed"] + s["failed"] + s["dropped"] + s["discarded"] + s["pending"]


def test_exception_is_counted_and_worker_keeps_running(caplog: pytest.LogCaptureFixture) -> None:
    drops = DropCounter()
    done: list[int] = []

    def flaky(fs: FrameSet) -> int:
        if fs.stamp_ns % 2:
            raise RuntimeError(f"boom {fs.stamp_ns}")
        return fs.stamp_ns

    w = InferenceWorker(flaky, queue_size=10, drops=drops, on_result=lambda fs, r: done.append(r))
    try:
        for i in range(6):
            w.submit(frameset(i, cameras=2))
        assert w.wait_idle(5)
        assert w.alive
        w.submit(frameset(10))
        assert w.wait_idle(5)
    finally:
        w.stop()
    assert done == [0, 2, 4, 10]
    assert w.failed == 3 and w.processed == 4
    assert drops.counts["worker_error"] == 3 * 2
    assert drops.last_message["worker_error"] == "RuntimeError: boom 5"
    assert any("boom" in r.getMessage() for r in caplog.records)


def test_errors_in_on_result_are_contained() -> None:
    drops = DropCounter()

    def bad_publish(fs: FrameSet, r: int) -> None:
        raise ValueError("publisher gone")

    w = InferenceWorker(lambda fs: 1, queue_size=2, drops=drops, on_result=bad_publish)
    try:
        w.submit(frameset(1, cameras=1))
        assert w.wait_idle(5)
        assert w.alive
    finally:
        w.stop()
    assert drops.counts["worker_error"] == 1


def test_none_results_are_not_published_and_latency_uses_the_stamp() -> None:
    published: list[int] = []
    now = 5_000_000_000
    w = InferenceWorker(lambda fs: None if fs.stamp_ns < 2 else fs.stamp_ns, 4, DropCounter(),
                        on_result=lambda fs, r: published.append(r), clock_ns=lambda: now)
    try:
        for i in range(4):
            w.submit(frameset(i))
        assert w.wait_idle(5)
    finally:
        w.stop()
    assert published == [2, 3]
    s = w.stats()
    assert s["processed"] == 4 and s["results"] == 2
    # latency = clock - image stamp (stamp 3 ns -> ~5000 ms)
    assert s["latency_ms_last"] == pytest.approx((now - 3) * 1e-6)


def test_stop_discards_pending_and_refuses_new_work() -> None:
    gate = Gate()
    drops = DropCounter()
    w = InferenceWorker(gate, queue_size=3, drops=drops)
    w.submit(frameset(0))
    assert gate.started.wait(2)
    w.submit(frameset(1))
    w.submit(frameset(2))
    gate.release.set()
    w.stop(timeout=5)
    assert not w.alive
    assert not w.submit(frameset(3, cameras=2))
    s = w.stats()
    assert s["submitted"] == 4
    assert s["submitted"] == s["processed"] + s["failed"] + s["dropped"] + s["discarded"] + s["pending"]
    assert drops.counts["worker_stopped"] == s["discarded"] * 4 - 2  # two pending 4-cam sets + one 2-cam set
    assert gate.seen[0] == 0


def test_exclusive_waits_for_the_frame_set_in_progress() -> None:
    gate = Gate()
    w = InferenceWorker(gate, queue_size=2, drops=DropCounter())
    try:
        w.submit(frameset(0))
        assert gate.started.wait(2)
        order: list[str] = []

        def service() -> None:
            with w.exclusive():
                order.append("service")

        t = threading.Thread(target=service)
        t.start()
        time.sleep(0.05)
        assert order == []  # blocked while process_fn holds the engine
        order.append("release")
        gate.release.set()
        t.join(2)
        assert order == ["release", "service"]
    finally:
        w.stop()


def test_counts_add_up_under_concurrent_producers() -> None:
    drops = LockedDropCounter()
    w = InferenceWorker(lambda fs: time.sleep(0.0005), queue_size=2, drops=drops)
    n_threads, per_thread = 4, 200

    def produce(k: int) -> None:
        for i in range(per_thread):
            w.submit(frameset(k * 1000 + i, cameras=1))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert w.wait_idle(10)
    w.stop()
    s = w.stats()
    assert s["submitted"] == n_threads * per_thread
    assert s["processed"] + s["dropped"] == s["submitted"]
    assert drops.counts["queue_full"] == s["dropped"] > 0


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        InferenceWorker(lambda fs: None, 0, DropCounter(), start=False)
