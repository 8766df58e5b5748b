"""Camera inputs as robots record them: encodings, rectification, discovery, bad input (unit level).

The bag-level tests (layouts run through ``recon-ros bag`` with no camera flags) are in
test_camera_bags.py.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from recon_ros.config import from_dict
from recon_ros.io.cameras import NoCameras, resolve_cameras
from recon_ros.io.discovery import discover_cameras
from recon_ros.io.encodings import BAYER_ENCODINGS, make_encoded_image, mosaic
from recon_ros.io.messages import BadMessage, MessageKit, image_to_rgb, make_camera_info, make_header
from recon_ros.io.rectify import (
    Calibration,
    Rectifier,
    RectifierCache,
    calibration_from_camera_info,
    distort_image,
)
from recon_ros.pipeline.frontend import FrontEnd
from recon_ros.pipeline.tf_buffer import TfBuffer

KIT = MessageKit.for_rosbags()
STAMP = 1_700_000_000_250_000_000
H, W = 48, 64
QUADRANTS = ((220, 30, 40), (20, 200, 60), (30, 40, 210), (180, 170, 160))


def quadrant_image() -> np.ndarray:
    """Four flat colour blocks: demosaicing and chroma subsampling are exact inside each block."""
    img = np.zeros((H, W, 3), np.uint8)
    img[: H // 2, : W // 2], img[: H // 2, W // 2:] = QUADRANTS[0], QUADRANTS[1]
    img[H // 2:, : W // 2], img[H // 2:, W // 2:] = QUADRANTS[2], QUADRANTS[3]
    return img


def block_interiors() -> np.ndarray:
    """Pixels at least 3 px from a block edge or the border (demosaicing reads a 3x3 neighbourhood)."""
    ys, xs = np.mgrid[0:H, 0:W]
    dy = np.minimum(np.abs(ys - H // 2 + 0.5), np.minimum(ys, H - 1 - ys) + 0.5)
    dx = np.minimum(np.abs(xs - W // 2 + 0.5), np.minimum(xs, W - 1 - xs) + 0.5)
    return (dy >= 3) & (dx >= 3)


def raw_image(encoding: str, data: bytes | np.ndarray, width: int, height: int, step: int, bigendian: int = 0):
    return KIT.cls("sensor_msgs/msg/Image")(
        header=make_header(KIT, STAMP, "cam_optical_frame"), height=height, width=width, encoding=encoding,
        is_bigendian=bigendian, step=step, data=np.frombuffer(bytes(data), np.uint8))


# ---- encodings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", BAYER_ENCODINGS)
def test_bayer_decodes_known_colours(encoding: str) -> None:
    img = quadrant_image()
    out = image_to_rgb(make_encoded_image(KIT, img, encoding, STAMP, "f"))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    inner = block_interiors()
    # flat blocks demosaic exactly (bilinear of equal samples); 0 measured, 1 allows rounding
    assert np.abs(out.astype(int) - img)[inner].max() <= 1
    # the pattern matters: the same mosaic read as another pattern gives other colours
    pattern = encoding[6:10]
    other = {"rggb": "bggr", "bggr": "rggb", "gbrg": "grbg", "grbg": "gbrg"}[pattern]
    msg = make_encoded_image(KIT, img, encoding, STAMP, "f")
    msg.encoding = encoding.replace(pattern, other)
    assert np.abs(image_to_rgb(msg).astype(int) - img)[inner].max() > 100


def test_bayer_mosaic_samples_the_named_colours() -> None:
    img = quadrant_image()
    m = mosaic(img, "grbg")  # G R / B G
    assert m[0, 0] == img[0, 0, 1] and m[0, 1] == img[0, 1, 0] and m[1, 0] == img[1, 0, 2] and m[1, 1] == img[1, 1, 1]


# BT.601 studio range (what YUV 4:2:2 cameras send and OpenCV decodes): white Y=235, black Y=16,
# red = (Y 81, U 90, V 240). Two pixel pairs: white|black sharing neutral chroma, red|red.
YUV_PIXELS = [((235, 16), (128, 128)), ((81, 81), (90, 240))]
YUV_EXPECTED = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [255, 0, 0]])


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422_decodes_known_pixels(encoding: str) -> None:
    uyvy = encoding in ("yuv422", "uyvy")  # ROS 'yuv422' is UYVY byte order
    row = []
    for (y0, y1), (u, v) in YUV_PIXELS:
        row += [u, y0, v, y1] if uyvy else [y0, u, y1, v]
    data = bytes(row * 2)  # two identical rows
    out = image_to_rgb(raw_image(encoding, data, 4, 2, 8))
    assert out.shape == (2, 4, 3)
    # BT.601 coefficients round to within 2 of full scale (measured max 1)
    assert np.abs(out[0].astype(int) - YUV_EXPECTED).max() <= 2, out[0]
    np.testing.assert_array_equal(out[0], out[1])


@pytest.mark.parametrize("bigendian", [0, 1])
@pytest.mark.parametrize(("encoding", "order"), [("mono16", None), ("rgb16", (0, 1, 2)), ("bgr16", (2, 1, 0))])
def test_16bit_encodings_keep_the_top_byte(encoding: str, order: tuple | None, bigendian: int) -> None:
    rng = np.random.default_rng(3)
    channels = 1 if order is None else 3
    values = rng.integers(0, 65536, size=(3, 5, channels), dtype=np.uint16)
    data = values.astype(">u2" if bigendian else "<u2").tobytes()
    out = image_to_rgb(raw_image(encoding, data, 5, 3, 5 * channels * 2, bigendian))
    top = (values >> 8).astype(np.uint8)
    expected = np.repeat(top, 3, axis=2) if order is None else top[..., list(order)]
    np.testing.assert_array_equal(out, expected)


def test_bad_encodings_are_clear() -> None:
    img = quadrant_image()
    odd = make_encoded_image(KIT, img[:, :63], "bayer_rggb8", STAMP, "f")
    with pytest.raises(BadMessage, match="needs an even width and height") as exc:
        image_to_rgb(odd)
    assert exc.value.reason == "bad_image_size"
    short = make_encoded_image(KIT, img, "yuv422", STAMP, "f")
    short.data = short.data[: len(short.data) // 2]
    with pytest.raises(BadMessage, match=r"'yuv422' 64x48 needs 2 bytes per pixel .*\(got 3072\)"):
        image_to_rgb(short)
    unknown = make_encoded_image(KIT, img, "rgb8", STAMP, "f")
    unknown.encoding = "bayer_xyzw8"
    with pytest.raises(BadMessage, match="unsupported image encoding 'bayer_xyzw8'.*bayer_rggb8"):
        image_to_rgb(unknown)


# ---- rectification ------------------------------------------------------------------------------
K = np.array([[80.0, 0, 79.5], [0, 80.0, 59.5], [0, 0, 1]])
BARREL = ("plumb_bob", np.array([-0.3, 0.1, 0.001, -0.0005, 0.0]))
FISHEYE = ("equidistant", np.array([0.05, -0.01, 0.0, 0.0]))
RATIONAL = ("rational_polynomial", np.array([-0.25, 0.08, 0.0005, 0.0, 0.0, 0.01, 0.0, 0.0]))


def calibration(model: str, d: np.ndarray, R: np.ndarray | None = None, P: np.ndarray | None = None) -> Calibration:
    msg = make_camera_info(KIT, K, 160, 120, STAMP, "f")
    msg.distortion_model, msg.d = model, d
    if R is not None:
        msg.r = R.ravel()
    if P is not None:
        msg.p = P.ravel()
    return calibration_from_camera_info(msg)


def textured(seed: int = 0) -> np.ndarray:
    """A smooth random texture (blurred noise): phase correlation finds its shift to a fraction of a pixel."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


@pytest.mark.parametrize("lens", [BARREL, FISHEYE, RATIONAL], ids=lambda lens: lens[0])
def test_rectification_undoes_a_known_lens(lens) -> None:
    model, d = lens
    img = textured()
    distorted = distort_image(img, K, model, d)
    # the lens moves pixels by several pixels away from the centre: far from the pinhole image there
    moved = np.abs(distorted.astype(float) - img)[20:40, 20:140].mean()
    rect = Rectifier(calibration(model, d))
    out = rect(distorted)
    np.testing.assert_allclose(rect.K, K)
    gray = [cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)[10:-10, 10:-10] for a in (img, out)]
    (sx, sy), _ = cv2.phaseCorrelate(gray[0], gray[1])
    # measured |shift| <= 0.032 px for the three lenses; 0.1 px leaves room for other OpenCV builds
    assert abs(sx) < 0.1 and abs(sy) < 0.1
    err = np.abs(out.astype(float) - img)[10:-10, 10:-10].mean()
    # two bilinear resamplings of a smooth texture: measured 0.57-0.59 grey levels mean error, while
    # the distorted image differs by 8.7-9.2 (>= 14x) between 20 and 40 px from the top
    assert err < 1.5 and moved > 5 * err, (err, moved)


def test_rectified_camera_is_P_and_R() -> None:
    angle = np.deg2rad(3.0)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    P = np.zeros((3, 4))
    P[:3, :3] = [[70.0, 0, 81.0], [0, 70.0, 58.0], [0, 0, 1]]
    P[0, 3] = -70.0 * 0.12  # right camera of a stereo pair: its own TF places it, Tx is not used
    rect = Rectifier(calibration(*BARREL, R=R, P=P))
    np.testing.assert_allclose(rect.K, P[:3, :3])
    np.testing.assert_allclose(rect.T_cam_rect[:3, :3], R.T)
    # a point straight ahead of the rectified camera lies along R^T z in the optical frame
    np.testing.assert_allclose(rect.T_cam_rect[:3, :3] @ [0, 0, 1], R[2], atol=1e-12)


def test_maps_are_built_once_per_calibration() -> None:
    cache = RectifierCache()
    a = cache.update("front", calibration(*BARREL))
    b = cache.update("front", calibration(*BARREL))
    assert a is b and cache.builds == 1
    cache.update("front", calibration("plumb_bob", BARREL[1] * 0.5))
    assert cache.builds == 2
    undistorted = cache.update("left", calibration("plumb_bob", np.zeros(5)))
    assert undistorted.identity and cache.builds == 3
    img = textured()
    assert undistorted(img) is img  # nothing to do: no copy, no remap


@pytest.mark.parametrize(("model", "d", "match"), [
    ("fisheye_kb8", np.array([0.1, 0, 0, 0]), "distortion model 'fisheye_kb8' is not supported"),
    ("equidistant", np.array([0.1, 0.01]), "'equidistant' distortion has 2 coefficients; expected 4..4"),
    ("plumb_bob", np.array([0.1, np.nan, 0, 0, 0]), "not finite"),
])
def test_bad_distortion_is_refused(model: str, d: np.ndarray, match: str) -> None:
    with pytest.raises(BadMessage, match=match) as exc:
        calibration(model, d)
    assert exc.value.reason == "bad_camera_info"


# ---- discovery ----------------------------------------------------------------------------------
GRAPH = [
    ("/cam_front/image_raw", ["sensor_msgs/msg/Image"]),
    ("/cam_front/camera_info", ["sensor_msgs/msg/CameraInfo"]),
    ("/cam_rear/image_raw/compressed", ["sensor_msgs/msg/CompressedImage"]),
    ("/cam_rear/camera_info", ["sensor_msgs/msg/CameraInfo"]),
    ("/robot/cam/color/image_raw", ["sensor_msgs/msg/Image"]),
    ("/robot/cam/color/image_raw/compressed", ["sensor_msgs/msg/CompressedImage"]),
    ("/robot/cam/color/camera_info", ["sensor_msgs/msg/CameraInfo"]),
    ("/robot/cam/depth/image_rect_raw", ["sensor_msgs/msg/Image"]),
    ("/robot/cam/depth/camera_info", ["sensor_msgs/msg/CameraInfo"]),
    ("/stereo/left/image_raw", ["sensor_msgs/msg/Image"]),
    ("/stereo/left/image_rect", ["sensor_msgs/msg/Image"]),
    ("/stereo/left/camera_info", ["sensor_msgs/msg/CameraInfo"]),
    ("/usb_cam/image_raw/compressedDepth", ["sensor_msgs/msg/CompressedImage"]),
    ("/lonely/image_raw", ["sensor_msgs/msg/Image"]),
    ("/recon/depth/cam_front/image", ["sensor_msgs/msg/Image"]),
    ("/recon/depth/cam_front/camera_info", ["sensor_msgs/msg/CameraInfo"]),
    ("/tf", ["tf2_msgs/msg/TFMessage"]),
]


def test_discovery_finds_the_usual_layouts() -> None:
    found = discover_cameras(GRAPH, ignore_prefixes=["/recon"])
    cams = {c.name: c for c in found.cameras}
    assert list(cams) == ["cam_front", "cam_rear", "robot/cam/color", "stereo/left"]
    assert cams["cam_front"].image_topic == "/cam_front/image_raw" and not cams["cam_front"].compressed
    assert cams["cam_rear"].compressed and cams["cam_rear"].info_topic == "/cam_rear/camera_info"
    assert cams["robot/cam/color"].image_topic == "/robot/cam/color/image_raw"  # raw before compressed
    assert cams["stereo/left"].image_topic == "/stereo/left/image_rect" and cams["stereo/left"].input_rectified
    why = dict(found.ignored)
    assert set(why) == {"/robot/cam/color/image_raw/compressed", "/robot/cam/depth/image_rect_raw",
                        "/stereo/left/image_raw", "/usb_cam/image_raw/compressedDepth", "/lonely/image_raw",
                        "/recon/depth/cam_front/image"}
    assert why["/lonely/image_raw"] == "no CameraInfo beside it (expected /lonely/camera_info)"
    assert "already uses /stereo/left/image_rect" in why["/stereo/left/image_raw"]
    assert "depth" in why["/robot/cam/depth/image_rect_raw"]
    assert "recon_ros" in why["/recon/depth/cam_front/image"]
    lines = found.describe("bag.mcap")  # what the run logs
    assert lines[0] == "bag.mcap: found 4 camera(s)"
    assert "  camera 'cam_rear': /cam_rear/image_raw/compressed (compressed) + /cam_rear/camera_info" in lines
    assert "  ignored /lonely/image_raw: no CameraInfo beside it (expected /lonely/camera_info)" in lines


def test_explicit_names_win_and_transport_is_found() -> None:
    bag_topics = [("/front/image_raw", "sensor_msgs/msg/Image"), ("/front/camera_info", "sensor_msgs/msg/CameraInfo"),
                  ("/left/image_raw/compressed", "sensor_msgs/msg/CompressedImage"),
                  ("/left/camera_info", "sensor_msgs/msg/CameraInfo"),
                  ("/other/image_raw", "sensor_msgs/msg/Image"), ("/other/camera_info", "sensor_msgs/msg/CameraInfo")]
    cfg, _ = resolve_cameras(from_dict({"cameras": ["front", "left"]}), bag_topics, "bag")
    assert cfg.cameras == ["front", "left"]
    assert cfg.topics.transports == ["raw", "compressed"]
    assert [cfg.image_topic(c) for c in cfg.cameras] == ["/front/image_raw", "/left/image_raw/compressed"]
    # set per camera: kept even where the bag has the other one
    cfg, _ = resolve_cameras(from_dict({"cameras": ["front", "left"], "topics.transports": ["compressed", "raw"]}),
                             bag_topics, "bag")
    assert [cfg.image_topic(c) for c in cfg.cameras] == ["/front/image_raw/compressed", "/left/image_raw"]
    with pytest.raises(NoCameras, match=r"no camera found .*/lonely/image_raw: no CameraInfo beside it"):
        resolve_cameras(from_dict({}), [("/lonely/image_raw", "sensor_msgs/msg/Image")], "bag")


# ---- bad input through the front end ------------------------------------------------------------
def test_bad_camera_input_is_a_named_counted_drop(caplog) -> None:
    cfg, _ = resolve_cameras(from_dict({}), GRAPH[:4], "graph")
    fe = FrontEnd(cfg, TfBuffer())
    info = make_camera_info(KIT, K, W, H, STAMP, "cam_front_optical_frame")
    assert fe.on_camera_info("cam_front", info)
    img = quadrant_image()
    with caplog.at_level(logging.WARNING, logger="recon_ros"):
        odd = make_encoded_image(KIT, img[:, :63], "bayer_gbrg8", STAMP, "cam_front_optical_frame")
        assert fe.on_image_message("cam_front", odd) == []
        yuv = make_encoded_image(KIT, img, "yuv422_yuy2", STAMP + 10**8, "cam_front_optical_frame")
        yuv.data = yuv.data[:-10]
        assert fe.on_image_message("cam_front", yuv) == []
        bad_info = make_camera_info(KIT, K, W, H, STAMP, "cam_rear_optical_frame")
        bad_info.distortion_model, bad_info.d = "kannala_brandt", np.array([0.1, 0.0, 0.0, 0.0])
        assert not fe.on_camera_info("cam_rear", bad_info)
        jpeg = make_encoded_image(KIT, img, "rgb8", STAMP, "cam_rear_optical_frame")
        assert fe.on_image_message("cam_rear", jpeg) == []
    assert fe.drops.as_dict() == {"bad_image_size": 2, "missing_camera_info": 1}
    assert fe.camera_info_errors == {"cam_rear": 1}
    log = caplog.text
    assert "/cam_front/image_raw @ 1700000000.250 s dropped (bad_image_size): 'bayer_gbrg8' image is 63x48; " \
           "a Bayer mosaic needs an even width and height" in log
    assert "/cam_front/image_raw @ 1700000000.350 s dropped (bad_image_size): 'yuv422_yuy2' 64x48 needs 2 bytes" in log
    assert "/cam_rear/camera_info @ 1700000000.250 s ignored (bad_camera_info): CameraInfo distortion model " \
           "'kannala_brandt' is not supported (expected one of ['plumb_bob', 'rational_polynomial', 'equidistant'])" \
           in log
    assert "dropped (missing_camera_info): no CameraInfo received yet on /cam_rear/camera_info (the latest one, " \
           "/cam_rear/camera_info @ 1700000000.250 s was rejected" in log


def test_node_waits_for_the_graph_to_show_cameras() -> None:
    from recon_ros.io.cameras import wait_for_cameras

    calls = []

    def graph():  # DDS discovery: the first look at the graph sees nothing yet
        calls.append(1)
        return [] if len(calls) < 3 else GRAPH

    cfg = wait_for_cameras(from_dict({"topics.discovery_wait_s": 5.0}), graph, "recon", poll_s=0.01)
    assert len(calls) == 3
    assert cfg.cameras == ["cam_front", "cam_rear", "robot/cam/color", "stereo/left"]
    assert cfg.topics.transports == ["raw", "compressed", "raw", "raw"]
    with pytest.raises(NoCameras):
        wait_for_cameras(from_dict({"topics.discovery_wait_s": 0.05}), list, "recon", poll_s=0.01)


def test_rectification_rotation_is_folded_into_the_camera_pose() -> None:
    """A CameraInfo with R != I: the rectified camera is R away from header.frame_id, and the pose the
    engine gets (T_base_cam) is that of the rectified camera, so the map stays where TF puts it."""
    import numpy.testing as npt

    cfg = from_dict({"cameras": ["c"]})
    tf = TfBuffer()
    T_base_cam = np.eye(4)
    T_base_cam[:3, 3] = [0.1, 0.0, 0.3]
    tf.set_transform("base_link", "c_optical_frame", STAMP, T_base_cam, static=True)
    tf.set_transform("odom", "base_link", STAMP, np.eye(4))
    fe = FrontEnd(cfg, tf)
    angle = np.deg2rad(4.0)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    info = make_camera_info(KIT, K, 160, 120, STAMP, "c_optical_frame")
    info.r = R.ravel()
    assert fe.on_camera_info("c", info)
    img = make_encoded_image(KIT, textured(), "rgb8", STAMP, "c_optical_frame")
    sets = fe.on_image_message("c", img) + fe.flush()
    assert len(sets) == 1
    T = sets[0].T_base_cam["c"]
    npt.assert_allclose(T[:3, :3], R.T, atol=1e-12)
    npt.assert_allclose(T[:3, 3], T_base_cam[:3, 3], atol=1e-12)
    assert sets[0].images["c"].frame_id == "c_optical_frame"


def test_frame_comes_from_the_header_and_a_disagreement_is_logged_once(caplog) -> None:
    cfg = from_dict({"cameras": ["a", "b"], "sync.min_cameras": 1})
    fe = FrontEnd(cfg, TfBuffer())
    for cam in ("a", "b"):
        fe.on_camera_info(cam, make_camera_info(KIT, K, 160, 120, STAMP, ""))
    with caplog.at_level(logging.INFO, logger="recon_ros"):
        for i in range(3):
            fe.on_image_message("a", make_encoded_image(KIT, textured(), "rgb8", STAMP + i * 10**8, "cam_a_link"))
        fe.on_image_message("b", make_encoded_image(KIT, textured(), "rgb8", STAMP, ""))
    assert fe.frame_ids == {"a": "cam_a_link", "b": "b_optical_frame"}  # template only without a header frame
    assert caplog.text.count("optical frame 'cam_a_link' from header.frame_id (frames.optical would give "
                             "'a_optical_frame')") == 1
    assert "'b_optical_frame'" not in caplog.text


def test_frame_sets_wait_for_tf_that_is_not_connected_yet() -> None:
    """Static TF and odometry can reach a node after its first images (a transient-local /tf_static matched
    late, robot_state_publisher starting after the cameras): frame sets wait for TF (sync.timeout_s behind
    the newest image) instead of being dropped as not connected; a TF that never comes still drops them."""
    cfg = from_dict({"cameras": ["a"], "sync.timeout_s": 0.5})
    step = 10**8
    image = lambda i: make_encoded_image(KIT, textured(), "rgb8", STAMP + i * step, "a_optical_frame")  # noqa: E731
    tf = TfBuffer()
    fe = FrontEnd(cfg, tf)
    fe.on_camera_info("a", make_camera_info(KIT, K, 160, 120, STAMP, "a_optical_frame"))
    sets = fe.on_image_message("a", image(0)) + fe.on_image_message("a", image(1))
    assert sets == [] and fe.drops.as_dict() == {}  # no TF at all yet: both wait
    tf.set_transform("base_link", "a_optical_frame", STAMP, np.eye(4), static=True)
    for i in range(3):
        tf.set_transform("odom", "base_link", STAMP + i * step, np.eye(4))
    sets = fe.on_tf_update() + fe.on_image_message("a", image(2))
    assert [fs.stamp_ns for fs in sets] == [STAMP, STAMP + step, STAMP + 2 * step]
    assert fe.drops.as_dict() == {}

    fe = FrontEnd(cfg, TfBuffer())  # TF never comes: dropped once 0.5 s behind the newest image, or at the end
    fe.on_camera_info("a", make_camera_info(KIT, K, 160, 120, STAMP, "a_optical_frame"))
    for i in range(8):
        assert fe.on_image_message("a", image(i)) == []
    assert fe.drops.as_dict() == {"tf_missing": 2}  # frames 0 and 1 are more than 0.5 s behind frame 7
    assert fe.flush() == [] and fe.drops.as_dict() == {"tf_missing": 8}


def test_images_before_the_first_camera_info_wait_for_it(caplog) -> None:
    """Image and CameraInfo are separate topics: over DDS a camera's first image can arrive before its
    first CameraInfo. Such images wait (sync.timeout_s behind the newest image) and are used once it comes."""
    cfg = from_dict({"cameras": ["a", "b"], "sync.timeout_s": 0.5})
    tf = TfBuffer()
    for cam in ("a", "b"):
        tf.set_transform("base_link", f"{cam}_optical_frame", STAMP, np.eye(4), static=True)
    for i in range(8):
        tf.set_transform("odom", "base_link", STAMP + i * 10**8, np.eye(4))
    fe = FrontEnd(cfg, tf)
    fe.on_camera_info("a", make_camera_info(KIT, K, 160, 120, STAMP, "a_optical_frame"))
    step = 10**8  # 10 Hz
    image = lambda cam, i: make_encoded_image(KIT, textured(), "rgb8", STAMP + i * step,  # noqa: E731
                                              f"{cam}_optical_frame")
    sets = fe.on_image_message("b", image("b", 0)) + fe.on_image_message("a", image("a", 0))
    assert sets == [] and len(fe.awaiting_info["b"]) == 1  # b's image waits for b's CameraInfo
    fe.on_camera_info("b", make_camera_info(KIT, K, 160, 120, STAMP, "b_optical_frame"))
    sets += fe.on_image_message("a", image("a", 1)) + fe.on_image_message("b", image("b", 1))
    assert [fs.stamp_ns for fs in sets] == [STAMP, STAMP + step]  # the held image completed frame set 0
    assert fe.drops.as_dict() == {} and not fe.awaiting_info

    # a camera whose CameraInfo never comes: its images are dropped once 0.5 s behind the newest image
    fe = FrontEnd(cfg, tf)
    fe.on_camera_info("a", make_camera_info(KIT, K, 160, 120, STAMP, "a_optical_frame"))
    with caplog.at_level(logging.WARNING, logger="recon_ros"):
        for i in range(7):
            fe.on_image_message("b", image("b", i))
            fe.on_image_message("a", image("a", i))
        held = len(fe.awaiting_info["b"])
        fe.flush()
    assert held == 6  # frames 1-6 within 0.5 s of frame 6; frame 0 dropped at frame 6
    assert fe.drops.as_dict() == {"missing_camera_info": 7, "incomplete_set": 7}
    assert f"/b/image_raw @ {STAMP / 1e9:.3f} s dropped (missing_camera_info): no CameraInfo received yet " \
           "on /b/camera_info" in caplog.text


def test_player_waits_for_the_image_topics_of_the_named_cameras() -> None:
    """`recon-ros play --wait-for-cameras [NAMES]` (bag_replay.launch.py): the image topics to wait for are the
    cameras the node would discover in the bag, restricted to the launch file's `cameras` when given."""
    from recon_ros.nodes.player import camera_image_topics, parse_args

    topics = {"/front/image_raw": "sensor_msgs/msg/Image", "/front/camera_info": "sensor_msgs/msg/CameraInfo",
              "/rear/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
              "/rear/camera_info": "sensor_msgs/msg/CameraInfo", "/tf": "tf2_msgs/msg/TFMessage",
              "/debug/image_raw": "sensor_msgs/msg/Image"}  # no CameraInfo beside it: not a camera
    assert camera_image_topics(topics, []) == ["/front/image_raw", "/rear/image_raw/compressed"]
    assert camera_image_topics(topics, ["rear,ghost"]) == ["/rear/image_raw/compressed"]
    args = parse_args(["bag", "--clock", "--wait-for-cameras", "--ros-args", "-r", "__node:=p"])
    assert args.wait_for_cameras == [] and args.clock
    assert parse_args(["bag"]).wait_for_cameras is None  # no waiting unless asked


def test_player_waits_for_n_matched_subscribers_per_topic() -> None:
    """`--wait-for-subscribers TOPIC=N`: playback starts only once N readers matched the player's publisher
    (a node AND a test's own reader); a topic it does not publish is counted in the graph."""
    from recon_ros.nodes.player import _wait_for_subscribers

    class Pub:
        def __init__(self, counts: list[int]) -> None:
            self.counts = counts

        def get_subscription_count(self) -> int:
            return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]

    class Node:
        def __init__(self) -> None:
            self.errors: list[str] = []

        def count_subscribers(self, topic: str) -> int:
            return 1 if topic == "/start" else 0

        def get_logger(self):
            return type("L", (), {"error": lambda _s, m: self.errors.append(m)})()

    node = Node()
    # matched readers grow 1 -> 2: waits until the second one
    pubs = {"/img": Pub([1, 1, 2])}
    assert _wait_for_subscribers(node, pubs, ["/img=2", "/start"], timeout=5.0)
    assert pubs["/img"].counts == [2]  # polled until two were matched
    # one matched reader never becomes two: gives up, naming the topic and the counts
    assert not _wait_for_subscribers(node, {"/img": Pub([1])}, ["/img=2"], timeout=0.3)
    assert "/img (1 of 2)" in node.errors[-1]
    with pytest.raises(ValueError, match="TOPIC=N"):
        _wait_for_subscribers(node, {}, ["/img=two"], timeout=0.1)
