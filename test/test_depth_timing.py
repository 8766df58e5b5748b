"""When a keyframe's depth is estimated and published: at the next keyframe (depth.wait_for_next_keyframe,
the default: sources on both sides) or at once; the end-of-run flush estimates what still waits. No ROS,
exact depth as the source (recon_ros.synthetic.stream.GroundTruthDepth), so only the scheduling is tested.
"""

from __future__ import annotations

import pytest

from recon_ros.config import from_dict
from recon_ros.pipeline.engine import ReconstructionEngine
from recon_ros.synthetic import SyntheticConfig
from recon_ros.synthetic.stream import GroundTruthDepth, LoopingStream

FRAMES = 5


@pytest.fixture(scope="module")
def stream() -> LoopingStream:
    return LoopingStream(SyntheticConfig(n_cameras=2, width=64, height=48, rate_hz=2.0))


def run(stream: LoopingStream, wait: bool) -> tuple[list, object, ReconstructionEngine]:
    # every frame set a keyframe (2 Hz at the stream's speed: > 5 cm apart, so each has sources)
    cfg = from_dict({"cameras": stream.camera_names, "runtime.device": "cpu", "keyframes.min_translation_m": 0.01,
                     "depth.min_baseline_m": 0.02, "depth.wait_for_next_keyframe": wait})
    engine = ReconstructionEngine(cfg, depth_source=GroundTruthDepth(stream.scene))
    outs = [engine.process(stream.frameset(i)) for i in range(FRAMES)]
    assert all(o is not None for o in outs)
    return outs, engine.flush(), engine


def test_waiting_publishes_each_keyframe_once_at_the_next_one(stream: LoopingStream) -> None:
    outs, final, engine = run(stream, wait=True)
    cams = set(stream.camera_names)
    # The first keyframe waits for two newer ones, so it is estimated together with the second (they check
    # each other); from then on each keyframe waits for the next one.
    assert outs[0].views == [] and outs[0].depth_keyframe_id == -1
    assert outs[1].views == [] and outs[1].depth_keyframe_id == -1
    assert {v.keyframe_id for v in outs[2].views} == {0, 1}
    for k in range(2, FRAMES):
        out = outs[k]
        assert {v.keyframe_id for v in out.views} - {0} == {k - 1} and {v.camera for v in out.views} == cams
        assert out.depth_keyframe_id == k - 1 and out.depth_stamp_ns == stream.stamp_ns(k - 1)
        # its sources include the keyframe that came after it
        assert any(kf == k for v in out.views for kf, _ in v.sources)
    for k in range(FRAMES):  # TF for the new keyframe's cameras goes out at once, whatever the depth
        assert {stamp for _, stamp, _ in outs[k].camera_poses} == {stream.stamp_ns(k)}
    # the flush estimates the last keyframe, from earlier sources only
    assert {v.keyframe_id for v in final.views} == {FRAMES - 1} and final.depth_keyframe_id == FRAMES - 1
    published = [v.keyframe_id for o in outs for v in o.views] + [v.keyframe_id for v in final.views]
    assert sorted(published) == sorted(k for k in range(FRAMES) for _ in cams)  # each view exactly once
    # fusion counts newer keyframes WITH depth: delay 2 + 1 while waiting; the flush fuses the rest
    fused = [c.keyframe_id for o in outs for c in o.clouds]
    assert fused == [k for k in range(FRAMES - 3) for _ in cams]
    assert sorted({c.keyframe_id for c in final.clouds}) == list(range(FRAMES - 3, FRAMES))


def test_a_segment_start_waits_for_two_and_is_fused_once_it_has_depth(stream: LoopingStream) -> None:
    cfg = from_dict({"cameras": stream.camera_names, "runtime.device": "cpu", "keyframes.min_translation_m": 0.01,
                     "depth.min_baseline_m": 0.02, "fusion.delay_keyframes": 0})
    engine = ReconstructionEngine(cfg, depth_source=GroundTruthDepth(stream.scene))
    outs = [engine.process(stream.frameset(i)) for i in range(4)]
    # delay 0 (+1 while waiting) would fuse keyframe 0 at step 1, before it has depth: it waits for its depth
    assert [c.keyframe_id for c in outs[1].clouds] == []
    assert sorted({c.keyframe_id for c in outs[2].clouds}) == [0, 1]
    assert all(v.depth is not None for v in engine.keyframes.get(0).views.values())  # fused WITH its depth
    assert engine._segment_starts == set()  # bounded: the id left once its depth was due


def test_a_segment_that_ends_early_estimates_its_start_with_what_it_has(stream: LoopingStream) -> None:
    cfg = from_dict({"cameras": stream.camera_names, "runtime.device": "cpu", "keyframes.min_translation_m": 0.01,
                     "depth.min_baseline_m": 0.02})
    engine = ReconstructionEngine(cfg, depth_source=GroundTruthDepth(stream.scene))
    assert engine.process(stream.frameset(0)) is not None and engine.process(stream.frameset(1)) is not None
    engine._start_segment(stream.stamp_ns(2), "test jump")  # what an odometry jump does
    out = engine.process(stream.frameset(2))
    # keyframe 0 (segment 0's start) is estimated now, from its own segment (keyframe 1) only
    assert {v.keyframe_id for v in out.views} == {0, 1}
    assert all(kf in (0, 1) for v in out.views for kf, _ in v.sources)
    assert engine._segment_starts == {2}  # the new segment's start waits in turn


def test_at_once_publishes_each_keyframe_at_its_own_step(stream: LoopingStream) -> None:
    outs, final, _ = run(stream, wait=False)
    assert outs[0].views == []  # no source yet: it waits as before
    assert {v.keyframe_id for v in outs[1].views} == {0, 1}  # ...and gets depth with the next one
    for k in range(2, FRAMES):
        assert {v.keyframe_id for v in outs[k].views} == {k} and outs[k].depth_keyframe_id == k
        assert all(kf < k or kf == k for v in outs[k].views for kf, _ in v.sources)  # nothing from the future
    assert final.views == []  # nothing left to estimate
    fused = [c.keyframe_id for o in outs for c in o.clouds]
    assert fused == [k for k in range(FRAMES - 2) for _ in stream.camera_names]


def test_the_delay_must_fit_the_buffer() -> None:
    from recon_ros.config import ConfigError

    with pytest.raises(ConfigError, match="wait_for_next_keyframe"):
        from_dict({"keyframes.buffer_size": 3, "fusion.delay_keyframes": 2}).validate()
    at_once = {"keyframes.buffer_size": 3, "fusion.delay_keyframes": 2, "depth.wait_for_next_keyframe": False}
    from_dict(at_once).validate()
