"""Fault injection through the bag tool (the same FrontEnd and engine the live node runs).

Each test writes a small synthetic bag with one kind of fault, runs it, and asserts the message
(naming topic/file/field and what was expected), that the run went on, and the count in the summary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from recon_ros.bag_tool import run_bag
from recon_ros.config import from_dict
from recon_ros.geometry.camera import PinholeCamera
from recon_ros.io.bag import BagError, BagReader, BagWriter
from recon_ros.io.messages import (
    BadMessage,
    MessageKit,
    image_to_rgb,
    make_camera_info,
    make_tf_message,
    make_transform_stamped,
    numpy_to_image,
)
from recon_ros.pipeline.engine import ReconstructionEngine
from recon_ros.pipeline.frames import View
from recon_ros.pipeline.keyframes import OdometryJumpDetector
from recon_ros.pipeline.sources import DepthEstimate
from recon_ros.synthetic.sequence import SyntheticConfig, SyntheticSequence

KIT = MessageKit.for_rosbags()
SCENE = SyntheticConfig(seed=1, n_cameras=4, n_frames=16, width=64, height=48)
# Sweep-plane count and keyframe spacing small enough that each run takes a few seconds.
BASE_CFG: dict[str, Any] = {"depth.num_planes": 24, "keyframes.min_translation_m": 0.05}


class RenderedSequence(SyntheticSequence):
    """Renders once: every test writes its own bag from the same frames."""

    def __init__(self, cfg: SyntheticConfig):
        super().__init__(cfg)
        self._frames = list(super().frames())

    def frames(self):  # noqa: ANN201 - same as the parent's
        return iter(self._frames)


@pytest.fixture(scope="module")
def seq() -> SyntheticSequence:
    return RenderedSequence(SCENE)


def frame_t(seq: SyntheticSequence, i: int) -> str:
    return f"{seq.poses[i][0] / 1e9:.3f} s"


def write_bag(
    path: Path,
    seq: SyntheticSequence,
    *,
    image: Callable[[str, int, np.ndarray, np.ndarray], tuple[Any, ...] | None] | None = None,
    info: Callable[[str, int, Any], Any] | None = None,
    odom: Callable[[int, np.ndarray], np.ndarray | None] | None = None,
    static_cams: list[str] | None = None,
    storage: str = "mcap",
) -> None:
    """The synthetic run as a bag; hooks change or remove messages (return None to leave one out).

    ``image(cam, i, rgb, K) -> (rgb, K) | (msg, ...)``, ``info(cam, i, msg) -> msg``, ``odom(i, T) -> T``.
    """
    frames = {c: f"{c}_optical_frame" for c in seq.camera_names}
    cams = seq.camera_names if static_cams is None else static_cams
    with BagWriter(path, KIT, storage=storage) as bag:
        t0 = seq.poses[0][0]
        static = [make_transform_stamped(KIT, seq.T_base_cam[c], t0, "base_link", frames[c]) for c in cams]
        bag.write("/tf_static", make_tf_message(KIT, static), t0)
        for f in seq.frames():
            t = f.stamp_ns
            T = f.T_odom_base if odom is None else odom(f.index, f.T_odom_base)
            if T is not None:
                bag.write("/tf", make_tf_message(KIT, [make_transform_stamped(KIT, T, t, "odom", "base_link")]), t)
            for cam in seq.camera_names:
                rgb, K = f.images[cam], seq.K.copy()
                out = (rgb, K) if image is None else image(cam, f.index, rgb, K)
                if out is None:
                    continue
                if isinstance(out[0], np.ndarray):
                    rgb, K = out
                    imgs = (numpy_to_image(KIT, rgb, "rgb8", t, frames[cam]),)
                else:  # ready-made image messages (at the sequence's K)
                    imgs = out
                msg = make_camera_info(KIT, K, imgs[0].width, imgs[0].height, t, frames[cam])
                msg = msg if info is None else info(cam, f.index, msg)
                if msg is not None:
                    bag.write(f"/{cam}/camera_info", msg, t)
                for img in imgs:
                    bag.write(f"/{cam}/image_raw", img, t)


class FlatDepth:
    """A depth source that costs nothing: these tests are about accounting, not depth quality."""

    def estimate(self, ref: View, sources: list[View], depth_range: tuple[float, float]) -> DepthEstimate:
        h, w = ref.rgb.shape[:2]
        return DepthEstimate(np.full((h, w), 2.0, np.float32), np.ones((h, w), np.float32), np.ones((h, w), bool))


def run(path: Path, seq: SyntheticSequence, caplog: pytest.LogCaptureFixture, planesweep: bool = False,
        **cfg: Any) -> dict:
    config = from_dict({"cameras": seq.camera_names, **BASE_CFG, **cfg})
    engine = ReconstructionEngine(config, depth_source=None if planesweep else FlatDepth())
    with caplog.at_level(logging.WARNING, logger="recon_ros"):
        res = run_bag(path, None, config, progress=False, keep_outputs=True, engine=engine)
    s = res.summary
    assert s["accounted"], s  # every image processed or counted as dropped
    s["_result"] = res
    return s


# ---- images ---------------------------------------------------------------------------------------
def test_float_images_are_accepted_and_nan_is_refused() -> None:
    rgb = np.linspace(0, 1, 4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    got = image_to_rgb(numpy_to_image(KIT, rgb, "32FC3", 0, "f"))
    np.testing.assert_array_equal(got, (rgb * 255 + 0.5).astype(np.uint8))
    mono = image_to_rgb(numpy_to_image(KIT, rgb[..., 0], "32FC1", 0, "f"))
    assert mono.shape == (4, 5, 3) and mono.dtype == np.uint8
    rgb[1, 2, 0], rgb[3, 3, 1] = np.nan, np.inf
    with pytest.raises(BadMessage) as exc:
        image_to_rgb(numpy_to_image(KIT, rgb, "32FC3", 0, "f"))
    assert exc.value.reason == "non_finite_pixels" and "2 NaN/inf values of 60" in str(exc.value)


def test_nan_float_image_is_dropped_and_run_goes_on(tmp_path: Path, seq, caplog) -> None:
    frames = {c: f"{c}_optical_frame" for c in seq.camera_names}

    def image(cam: str, i: int, rgb: np.ndarray, K: np.ndarray) -> tuple:
        if cam != "left":
            return rgb, K
        f = rgb.astype(np.float32) / 255.0
        if i == 4:
            f[10:12, 10:20] = np.nan
        msg = numpy_to_image(KIT, f, "32FC3", seq.poses[i][0], frames[cam])
        return (msg,)

    write_bag(tmp_path / "nan", seq, image=image)
    s = run(tmp_path / "nan", seq, caplog)
    assert s["images_dropped"]["non_finite_pixels"] == 1
    expected = "dropped (non_finite_pixels): '32FC3' image has 60 NaN/inf values of 9216"
    assert f"/left/image_raw @ {frame_t(seq, 4)} {expected}" in caplog.text
    assert s["keyframes"] >= 3 and s["images_in_keyframes"] > 0  # float images from 'left' were used


def test_bad_stamps_are_dropped_named_and_counted(tmp_path: Path, seq, caplog) -> None:
    frames = {c: f"{c}_optical_frame" for c in seq.camera_names}

    def image(cam: str, i: int, rgb: np.ndarray, K: np.ndarray) -> tuple:
        if cam != "front" or i not in (5, 8, 10):
            return rgb, K
        t = seq.poses[i][0]
        msg = numpy_to_image(KIT, rgb, "rgb8", t, frames[cam])
        if i == 5:  # the driver sends the same frame twice
            return msg, numpy_to_image(KIT, rgb, "rgb8", t, frames[cam])
        if i == 8:  # a stale frame from a buffer: stamp of frame 3
            return (numpy_to_image(KIT, rgb, "rgb8", seq.poses[3][0], frames[cam]),)
        return (numpy_to_image(KIT, rgb, "rgb8", t + 3600 * 10**9, frames[cam]),)  # clock an hour ahead

    write_bag(tmp_path / "stamps", seq, image=image)
    s = run(tmp_path / "stamps", seq, caplog)
    d = s["images_dropped"]
    assert (d["duplicate_stamp"], d["out_of_order"], d["future_stamp"]) == (1, 1, 1)
    assert d["incomplete_set"] == 3 * 2  # frames 8 and 10 lack 'front'
    log = caplog.text
    assert f"/front/image_raw @ {frame_t(seq, 5)} dropped (duplicate_stamp)" in log
    assert f"/front/image_raw @ {frame_t(seq, 3)} dropped (out_of_order): front: stamp" in log
    assert "is not newer than the last frame set" in log
    assert "dropped (future_stamp): front: stamp" in log and "3600.1 s ahead of the newest image" in log  # vs frame 9
    assert s["frame_sets"] == 16 - 2 and s["keyframes"] >= 3


def test_cameras_of_different_sizes_are_processed_together(tmp_path: Path, seq, caplog) -> None:
    def image(cam: str, i: int, rgb: np.ndarray, K: np.ndarray) -> tuple:
        if cam != "right":
            return rgb, K
        big = cv2.resize(rgb, (96, 72), interpolation=cv2.INTER_LINEAR)
        return big, PinholeCamera.from_K(K, 64, 48).resized(96, 72).K

    write_bag(tmp_path / "sizes", seq, image=image)
    s = run(tmp_path / "sizes", seq, caplog, planesweep=True)  # the sweep warps sources of another size
    assert s["images_dropped"] == {}, s["drop_messages"]
    res = s["_result"]
    sizes = {v.camera: v.depth.shape for k in res.keyframes for v in k.views}
    assert sizes["right"] == (72, 96) and sizes["front"] == (48, 64)
    assert s["keyframes"] >= 3 and s["map_points"] > 0


# ---- CameraInfo -----------------------------------------------------------------------------------
def test_bad_camera_info_is_named_counted_and_recovered_from(tmp_path: Path, seq, caplog) -> None:
    def info(cam: str, i: int, msg: Any) -> Any:
        if cam != "left" or i >= 6:
            return msg
        if i == 1:
            k = np.array(msg.k, dtype=np.float64)
            k[0] = -k[0]
            msg.k = k
        elif i == 2:
            msg.distortion_model = "fisheye_kb8"
        else:  # the log is rate-limited per topic: the three kinds come first
            msg.k = np.zeros(9)
        return msg

    write_bag(tmp_path / "info", seq, info=info)
    s = run(tmp_path / "info", seq, caplog)
    assert s["camera_info_errors"] == {"/left/camera_info": 6}
    log = caplog.text
    assert "/left/camera_info @ 1700000000.000 s ignored (bad_camera_info): CameraInfo K is all zero" in log
    assert "/left/camera_info @ 1700000000.100 s ignored (bad_camera_info): CameraInfo K has focal lengths fx=-" in log
    assert "distortion model 'fisheye_kb8' is not supported" in log
    # left's images wait for a valid CameraInfo; frames 0-5 are therefore incomplete sets
    assert s["images_dropped"]["missing_camera_info"] == 6
    assert "no CameraInfo received yet on /left/camera_info" in log
    assert s["images_dropped"]["incomplete_set"] == 3 * 6
    assert s["keyframes"] >= 2  # once the calibration arrived the run went on


def test_missing_camera_info_topic_is_reported(tmp_path: Path, seq, caplog) -> None:
    write_bag(tmp_path / "noinfo", seq, info=lambda cam, i, msg: None if cam == "back" else msg)
    s = run(tmp_path / "noinfo", seq, caplog, **{"sync.min_cameras": 3})
    assert s["missing_topics"] == ["/back/camera_info"]
    assert "topic /back/camera_info is not in the bag" in caplog.text
    assert s["images_dropped"] == {"missing_camera_info": 16}
    assert s["keyframes"] >= 3


# ---- TF ---------------------------------------------------------------------------------------------
def test_missing_extrinsics_drop_the_camera_or_the_set(tmp_path: Path, seq, caplog) -> None:
    cams = [c for c in seq.camera_names if c != "back"]
    write_bag(tmp_path / "noext", seq, static_cams=cams)
    # all cameras required: every set is dropped, naming the frames that are not connected
    s = run(tmp_path / "noext", seq, caplog)
    assert s["images_dropped"] == {"tf_missing": 4 * 16} and s["keyframes"] == 0
    assert "no transform between 'base_link' and 'back_optical_frame'" in caplog.text
    caplog.clear()
    # a degraded rig is allowed: only the camera without extrinsics leaves each set
    s = run(tmp_path / "noext", seq, caplog, **{"sync.min_cameras": 3})
    assert s["images_dropped"] == {"tf_missing": 16}
    assert "/back/image_raw @" in caplog.text and "dropped (tf_missing)" in caplog.text
    assert s["keyframes"] >= 3 and s["map_points"] > 0


def test_odometry_stopping_is_extrapolation_counted_per_set(tmp_path: Path, seq, caplog) -> None:
    write_bag(tmp_path / "stale", seq, odom=lambda i, T: T if i < 8 else None)
    s = run(tmp_path / "stale", seq, caplog)
    # frames 8..15 cannot get odom->base_link: they wait for TF, then are dropped (not lost)
    assert s["images_dropped"] == {"tf_extrapolation": 4 * 8}
    assert "transform odom->base_link needed at" in caplog.text and "in the future of the buffered range" in (
        caplog.text)
    assert s["keyframes"] >= 2 and s["frame_sets"] == 8


def test_odometry_jump_starts_a_new_segment(tmp_path: Path, seq, caplog) -> None:
    jump = np.eye(4)
    jump[:3, 3] = (3.0, -2.0, 0.0)  # an odometry reset: 3.6 m in one frame period

    write_bag(tmp_path / "jump", seq, odom=lambda i, T: jump @ T if i >= 8 else T)
    s = run(tmp_path / "jump", seq, caplog)
    assert s["odometry_jumps"] == 1 and s["images_dropped"] == {}
    assert f"frame set @ {frame_t(seq, 8)}: odometry moved 3.5" in caplog.text  # 3.6 m minus the robot's step
    assert "starting keyframe segment 1" in caplog.text
    kfs = s["_result"].keyframes
    first_after = next(k for k in kfs if k.stamp_ns >= seq.poses[8][0])
    assert first_after.reason == "odometry_jump" and first_after.stamp_ns == seq.poses[8][0]
    before = {k.keyframe_id for k in kfs if k.keyframe_id < first_after.keyframe_id}
    views = s["_result"].depth_views()
    for v in views:  # no depth estimate pairs views across the jump
        side = v.keyframe_id in before
        assert all((kf in before) == side for kf, _ in v.sources), (v.keyframe_id, v.sources)
    # both segments got depth (a view's depth comes one keyframe later: depth.wait_for_next_keyframe)
    assert any(v.sources for v in views if v.keyframe_id in before)
    assert any(v.sources for v in views if v.keyframe_id > first_after.keyframe_id)


def test_odometry_jump_detector_limits() -> None:
    det = OdometryJumpDetector(max_speed_mps=2.0, max_turn_rate_dps=90.0)
    T = np.eye(4)
    assert det.check(0, T) is None
    T1 = T.copy()
    T1[0, 3] = 0.1  # 1 m/s at 10 Hz: fine
    assert det.check(100_000_000, T1) is None
    T2 = T1.copy()
    T2[0, 3] = 0.4  # 3 m/s
    assert "moved 0.30 m" in det.check(200_000_000, T2)
    assert det.check(200_000_000, T2) is None  # same stamp: no rate to judge
    T3 = T2.copy()
    c, s_ = np.cos(np.radians(30)), np.sin(np.radians(30))
    T3[:2, :2] = [[c, -s_], [s_, c]]  # 30 deg in 0.1 s
    assert "turned 30.0 deg" in det.check(300_000_000, T3)
    T4 = T3.copy()
    T4[0, 3] += 10.0  # 10 m after 10 s of no odometry: 1 m/s, not a jump
    assert det.check(10_300_000_000, T4) is None
    assert OdometryJumpDetector(0.0, 0.0).check(0, T) is None


# ---- cameras dropping out -----------------------------------------------------------------------
def test_camera_drops_out_and_recovers(tmp_path: Path, seq, caplog) -> None:
    write_bag(tmp_path / "gap", seq, image=lambda cam, i, rgb, K: None if cam == "back" and 5 <= i < 10 else (rgb, K))
    s = run(tmp_path / "gap", seq, caplog, **{"sync.min_cameras": 3})
    assert s["images_dropped"] == {} and s["camera_dropouts"] == {"back": 1}
    assert s["cameras_missing_at_end"] == []
    assert f"/back/image_raw: no image in the frame set @ {frame_t(seq, 5)}; continuing with 3 camera(s)" in (
        caplog.text)
    assert f"/back/image_raw: camera is back @ {frame_t(seq, 10)}" in caplog.text
    kfs = s["_result"].keyframes
    cams_per_kf = [(k.stamp_ns, {v.camera for v in k.views} | {c.camera for c in k.clouds}) for k in kfs]
    assert any(t >= seq.poses[10][0] and "back" in cams for t, cams in cams_per_kf), "rig did not recover"
    assert s["images_in_keyframes"] + s["images_not_keyframe"] == 4 * 16 - 5


# ---- bags -------------------------------------------------------------------------------------------
def _truncate(path: Path, fraction: float) -> Path:
    data = next(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    blob = data.read_bytes()
    data.write_bytes(blob[: int(len(blob) * fraction)])
    return data


def test_truncated_mcap_yields_what_precedes_the_damage(tmp_path: Path, seq, caplog) -> None:
    """A recording cut short: no footer, no index, and (here) no metadata.yaml either."""
    path = tmp_path / "cut"
    write_bag(path, seq)
    (path / "metadata.yaml").unlink()
    data = _truncate(path, 0.6)
    s = run(path, seq, caplog)
    errors = s["bag_errors"]
    assert s["bag_truncated"] and f"{path}: cannot be opened with its index" in errors[0]
    assert f"{data}: stopped reading: file ends at byte" in errors[-1] and "before its footer" in errors[-1]
    # everything before the damage: about 60 % of the 64 images, all of them accounted for
    assert 0.5 * 64 <= s["images_total"] < 0.6 * 64 and s["keyframes"] >= 3


def test_salvage_reader_reads_an_intact_mcap_like_rosbags(tmp_path: Path, seq) -> None:
    from recon_ros.io.mcap_salvage import McapSalvage

    write_bag(tmp_path / "ok", seq)
    with BagReader(tmp_path / "ok", KIT) as r:
        expected = [(m.topic, m.log_time_ns, bytes(m.raw)) for m in r.messages()]
    salvage = McapSalvage(next((tmp_path / "ok").glob("*.mcap")))
    got = [(salvage.channels[m.channel_id].topic, m.log_time_ns, m.data) for m in salvage.messages()]
    assert salvage.complete and salvage.error == ""
    assert sorted(got) == sorted(expected) and len(got) == 1 + 16 * 9
    assert {c.msgtype for c in salvage.channels.values()} == {
        "tf2_msgs/msg/TFMessage", "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"}


def test_output_of_a_salvaged_bag_is_readable(tmp_path: Path, seq) -> None:
    write_bag(tmp_path / "cut", seq)
    _truncate(tmp_path / "cut", 0.5)
    cfg = from_dict({"cameras": seq.camera_names, **BASE_CFG})
    engine = ReconstructionEngine(cfg, depth_source=FlatDepth())
    s = run_bag(tmp_path / "cut", tmp_path / "out", cfg, progress=False, engine=engine).summary
    with BagReader(tmp_path / "out", KIT) as r:
        counts = r.message_counts()
    assert counts["/front/image_raw"] == s["images_read"]["/front/image_raw"] > 0  # inputs copied
    assert counts["/recon/cloud"] > 0


def test_damaged_sqlite_bag_is_a_clear_error(tmp_path: Path, seq) -> None:
    path = tmp_path / "db"
    write_bag(path, seq, storage="sqlite3")
    _truncate(path, 0.6)
    with pytest.raises(BagError, match=r"cannot open bag .*db: .*malformed.*sqlite3 FILE \.recover"):
        run_bag(path, None, from_dict({"cameras": seq.camera_names}), progress=False)


def test_wrong_and_unknown_message_types(tmp_path: Path, seq, caplog) -> None:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    path = tmp_path / "types"
    write_bag(path, seq)
    msgdef = "float64 battery\nstring note\n"
    out = tmp_path / "types_plus"
    with BagWriter(out, KIT) as bag, BagReader(path, KIT) as r:
        acme = get_typestore(Stores.EMPTY)  # a valid type, just not one our typestore knows
        acme.register(get_types_from_msg(msgdef, "acme_msgs/msg/Status"))
        conn = bag._writer.add_connection("/robot/status", "acme_msgs/msg/Status", msgdef=msgdef,
                                          rihs01=acme.hash_rihs01("acme_msgs/msg/Status"))
        cinfo = bag._writer.add_connection("/back/image_raw", "sensor_msgs/msg/CameraInfo", typestore=KIT.typestore)
        for m in r.messages():
            bag.write_raw(m)
            if m.topic == "/front/camera_info":
                bag._writer.write(conn, m.log_time_ns, b"\x00\x01\x00\x00" + bytes(16))
                bag._writer.write(cinfo, m.log_time_ns + 1, bytes(m.raw))
    s = run(out, seq, caplog, **{"sync.min_cameras": 3})
    # a CameraInfo published on an image topic: each one dropped, named, counted
    assert s["images_dropped"] == {"wrong_type": 16}
    assert "/back/image_raw @" in caplog.text and "message type sensor_msgs/msg/CameraInfo, expected " \
        "sensor_msgs/msg/Image" in caplog.text
    assert s["keyframes"] >= 3  # the unknown acme type on another topic is ignored
    assert s["images_total"] == 4 * 16 + 16


# ---- errors inside the engine ---------------------------------------------------------------------
def test_stage_error_drops_one_set_and_ids_stay_unique(tmp_path: Path, seq, caplog, monkeypatch) -> None:
    write_bag(tmp_path / "ok", seq)
    config = from_dict({"cameras": seq.camera_names, **BASE_CFG})
    engine = ReconstructionEngine(config, depth_source=FlatDepth())
    real_fuse, calls = engine._fuse, []

    def fuse(ids: list[int]):  # fusion fails once, after the keyframe entered the buffer
        calls.append(ids)
        if len(calls) == 3:
            raise RuntimeError("injected fusion failure")
        return real_fuse(ids)

    monkeypatch.setattr(engine, "_fuse", fuse)
    with caplog.at_level(logging.WARNING, logger="recon_ros"):
        res = run_bag(tmp_path / "ok", None, config, progress=False, keep_outputs=True, engine=engine)
    s = res.summary
    assert s["images_dropped"] == {"processing_error": 4} and s["accounted"]
    assert "failed: injected fusion failure" in caplog.text
    ids = [k.keyframe_id for k in res.keyframes]
    assert len(ids) == len(set(ids)) and len(ids) >= 4  # went on
    assert len(set(range(max(ids) + 1)) - set(ids)) == 1  # the failed keyframe's id is not reused
    assert len({kf.id for kf in engine.keyframes}) == len(engine.keyframes)


def test_published_path_is_thinned_evenly() -> None:
    from recon_ros.io.outputs import thin_path

    path = [(i, np.eye(4)) for i in range(10_000)]
    thin = thin_path(path, 500)
    stamps = [s for s, _ in thin]
    assert len(thin) == 500 and stamps[0] == 0 and stamps[-1] == 9_999
    assert max(np.diff(stamps)) - min(np.diff(stamps)) <= 1  # evenly spread
    assert thin_path(path[:10], 500) == path[:10]
