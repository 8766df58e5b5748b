"""The one configuration schema of recon_ros.

The same dotted names (``sync.slop_s``, ``depth.source`` ...) are used by the ROS node's parameters,
the YAML files in ``config/`` (``/**: ros__parameters:`` style or plain) and the CLI's ``--set``.
Every field is documented in its ``metadata["help"]``; ``describe()`` prints them all.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

POSE_SOURCES = ("tf", "mvdust3r", "mvdust3r+")
DEPTH_SOURCES = ("planesweep", "diffmvs", "casdiffmvs")
BACKENDS = ("torch", "onnxruntime", "tensorrt")
TF_MODES = ("map_odom", "map_camera", "none")
RELIABILITY = ("reliable", "best_effort")


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    meta = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TopicsConfig:
    image: str = _f("/{camera}/image_raw", "Image topic per camera; '{camera}' is replaced by the camera name.")
    compressed: bool = _f(False, "Subscribe to '<image>/compressed' (sensor_msgs/CompressedImage, JPEG/PNG).")
    camera_info: str = _f("/{camera}/camera_info", "CameraInfo topic per camera.")
    output_prefix: str = _f(
        "recon", "Prefix of every topic recon_ros publishes. Relative (default): the node's namespace moves the "
        "outputs (namespace robot1 -> /robot1/recon/...); absolute ('/recon'): fixed names. Bags record it under '/'.")
    image_topics: list = _f(
        [], "Image topic per camera, in the order of 'cameras' (overrides topics.image; empty = the template). "
        "Filled by camera discovery.")
    camera_info_topics: list = _f(
        [], "CameraInfo topic per camera, in the order of 'cameras' (overrides topics.camera_info).")
    transports: list = _f(
        [], "'raw', 'compressed' or 'auto' per camera, in the order of 'cameras'. Empty = topics.compressed for "
        "every camera when set, else 'auto': raw when the image topic exists, '<image>/compressed' when only it does.")
    discovery_wait_s: float = _f(
        2.0, "Node with empty 'cameras': how long to wait for camera topics to appear on the ROS graph.")
    depth_ground_truth: str = _f(
        "", "Bag tool only: 32FC1 ground-truth depth topic per camera ('{camera}' is replaced), e.g. "
        "'/{camera}/depth_ground_truth'; when set, the summary scores the published depth against it.")


@dataclass
class FramesConfig:
    map: str = _f("map", "Fixed frame of the fused map and the published poses.")
    odom: str = _f("odom", "Odometry frame (REP-105).")
    base: str = _f("base_link", "Robot base frame carrying the camera rig.")
    optical: str = _f("{camera}_optical_frame", "Optical frame of a camera whose images carry no header.frame_id "
                      "(the frame_id of each image is used otherwise; z forward, x right, y down).")
    tf_mode: str = _f(
        "map_odom",
        "Transform recon_ros publishes: 'map_odom' (map->odom, needs odometry), 'map_camera' "
        "(map-><camera optical frame>, only when no TF tree connects the cameras, otherwise a frame "
        "would get two parents) or 'none'.",
        TF_MODES,
    )


@dataclass
class SyncConfig:
    slop_s: float = _f(0.02, "Images whose stamps differ by at most this many seconds form one frame set.")
    timeout_s: float = _f(0.5, "An incomplete frame set older than this (vs. the newest stamp) is dropped.")
    max_pending: int = _f(16, "Bound on frame sets being assembled at once.")
    future_tolerance_s: float = _f(5.0, "Stamps further than this ahead of the newest accepted stamp are rejected.")
    min_cameras: int = _f(0, "Accept a frame set with at least this many cameras when one times out (0 = all).")


@dataclass
class KeyframeConfig:
    min_translation_m: float = _f(0.15, "New keyframe once the base moved this far since the last one.")
    min_rotation_deg: float = _f(12.0, "New keyframe once the base turned this much since the last one.")
    max_interval_s: float = _f(3.0, "New keyframe at least this often even when standing still (0 = never).")
    min_interval_s: float = _f(0.0, "Never two keyframes closer in time than this.")
    buffer_size: int = _f(8, "Keyframes kept in memory (oldest evicted); bounds the reconstruction window.")


@dataclass
class PoseConfig:
    source: str = _f("tf", "Where camera poses come from: odometry+extrinsics from TF, or MV-DUSt3R(+).", POSE_SOURCES)
    checkpoint: str = _f("", "MV-DUSt3R checkpoint (.pth) for the learned pose sources.")
    window_keyframes: int = _f(2, "Keyframes per MV-DUSt3R window (views = keyframes x cameras).")
    min_confidence: float = _f(
        3.0, "Percentile of pointmap confidence below which points are ignored for poses and depth ranges."
    )
    max_speed_mps: float = _f(
        5.0, "Odometry faster than this between consecutive frame sets is a jump (reset, relocalisation): "
        "the keyframe window restarts so no depth or fusion pairs views across it (0 = never)."
    )
    max_turn_rate_dps: float = _f(360.0, "Same as max_speed_mps for rotation, in degrees per second (0 = never).")
    input_mode: str = _f(
        "square", "MV-DUSt3R input: 'square' = the upstream demo's centred 224x224 crop; 'full_fov' = long side 224 "
        "and the short side cropped to a multiple of 16 (224x160 for 4:3, 224x112 for 16:9), keeping the whole "
        "field of view.", ("square", "full_fov"),
    )


@dataclass
class DepthConfig:
    source: str = _f("planesweep", "Depth estimator.", DEPTH_SOURCES)
    checkpoint: str = _f("", "DiffMVS / CasDiffMVS checkpoint (.ckpt) for the learned depth sources.")
    preset: str = _f("", "Network preset (e.g. casdiffmvs_blend); empty = '<source>_blend'.")
    width: int = _f(0, "Processing width in pixels (0 = image width); height follows the aspect ratio.")
    min_depth_m: float = _f(0.3, "Nearest depth hypothesis.")
    max_depth_m: float = _f(12.0, "Farthest depth hypothesis.")
    num_sources: int = _f(4, "Source views per reference view (chosen by frustum overlap).")
    min_overlap: float = _f(0.2, "Minimum frustum overlap for a view to be used as source.")
    min_baseline_m: float = _f(0.05, "Source views closer than this to the reference are skipped (no parallax).")
    wait_for_next_keyframe: bool = _f(
        True, "Estimate a keyframe's depth when the next keyframe arrives, with sources on both sides: covers "
        "what no earlier keyframe saw (a backward-facing camera's far side; measured +10 points of coverage "
        "there) at one keyframe interval more latency; a segment's first keyframe waits for a second newer one, so "
        "that its depth is estimated (and checked) together with the second's. False = at once, from earlier "
        "keyframes only.")
    stereo_fattening_check: bool = _f(
        True, "Rectified stereo pairs (SGBM): a second, less smoothed SGBM run and an edge-aware check that drop "
        "foreground fattening at depth edges (Motorcycle: delta 98.2 -> 99.1 %, AbsRel 1.30 -> 0.95 %) at 5-7x the "
        "SGBM path's time. False = one SGBM run.")
    num_planes: int = _f(96, "Plane-sweep hypotheses, uniform in inverse depth.")
    zncc_window: int = _f(7, "Plane-sweep ZNCC window size in pixels (odd).")
    seed: int = _f(0, "Seed of the diffusion noise (reproducible learned depth).")
    publish: str = _f(
        "filtered", "Published depth images: 'filtered' (only pixels that pass the checks below) or 'raw' "
        "(the depth source's photometric mask only).", ("filtered", "raw"),
    )
    publish_min_confidence: float = _f(0.4, "Published depth: minimum photometric confidence of a pixel.")
    publish_speckle_size: int = _f(
        100, "Published depth: blobs of at most this many pixels that differ from their surroundings are removed "
        "(0 = off).")
    publish_speckle_range: float = _f(0.02, "Published depth: relative depth step that separates two blobs.")
    publish_min_consistent_views: int = _f(
        1, "Published depth: views with depth that must agree with a pixel (when any view with depth overlaps).")
    publish_pixel_threshold: float = _f(1.0, "Published depth: max round-trip reprojection error (px) to agree.")
    publish_relative_depth_threshold: float = _f(0.02, "Published depth: max relative depth difference to agree.")
    publish_unchecked_min_confidence: float = _f(
        0.9, "Published depth: a pixel that no view with depth can check (none has depth where it lands) is "
        "published when its photometric confidence reaches this (> 1 = never).")


@dataclass
class FusionConfig:
    pixel_threshold: float = _f(1.0, "Max reprojection error (px) for a source view to agree.")
    relative_depth_threshold: float = _f(0.01, "Max relative depth difference for a source view to agree.")
    min_consistent_views: int = _f(2, "Source views that must agree for a pixel to be kept.")
    confidence_threshold: float = _f(0.3, "Per-pixel confidence below which depth is dropped (photometric mask).")
    stage_confidence_thresholds: list = _f(
        [], "Per-stage confidence thresholds for learned depth; empty = the network's upstream defaults."
    )
    max_views: int = _f(8, "Other views tested for consistency per reference view.")
    delay_keyframes: int = _f(
        2, "Fuse a keyframe once this many newer keyframes have depth (checks both sides; adds latency)."
    )


@dataclass
class MapConfig:
    voxel_size_m: float = _f(0.03, "Voxel edge of the fused map.")
    max_points: int = _f(500_000, "Bound on map points; the voxel size grows when it is exceeded.")
    max_range_m: float = _f(8.0, "Points farther than this from their camera are not fused.")
    max_keyframe_points: int = _f(200_000, "Bound on points in one per-keyframe cloud message.")
    organized_keyframe_cloud: bool = _f(
        False, "Publish the per-keyframe cloud organized (height x width of the depth image, NaN = not fused) "
        "for consumers that look up pixels; max_keyframe_points does not apply then. False = unorganized."
    )


@dataclass
class RuntimeConfig:
    backend: str = _f("torch", "Inference backend for learned models.", BACKENDS)
    device: str = _f("auto", "'auto', 'cpu', 'cuda' or 'cuda:N'.")
    fp16: bool = _f(False, "Half precision on GPU backends.")
    engine_cache_dir: str = _f("~/.cache/recon_ros/engines", "Where TensorRT engines are built and cached.")
    engine_on_stale: str = _f(
        "rebuild", "A cached engine built for another GPU, TensorRT version, checkpoint or shape: rebuild it "
        "(logged) or refuse to start.", ("rebuild", "refuse"),
    )
    queue_size: int = _f(2, "Frame sets waiting for the inference worker; the oldest is dropped when full.")
    threads: int = _f(0, "CPU threads for torch (0 = torch default).")
    known_bad_tensorrt: str = _f(
        "verify", "TensorRT engines under a version listed as bad (recon_ros.runtime.verify.KNOWN_BAD_TENSORRT): "
        "'verify' runs them only after they pass the ONNX Runtime sample check 3 times (warning logged), "
        "'refuse' refuses them before building. Every engine is checked against ONNX Runtime before use.",
        ("verify", "refuse"),
    )


@dataclass
class QosConfig:
    images: str = _f("best_effort", "Reliability of image subscriptions (sensor data QoS).", RELIABILITY)
    clouds: str = _f("reliable", "Reliability of per-keyframe clouds and depth images.", RELIABILITY)
    depth_queue: int = _f(5, "History depth of published topics.")
    image_queue: int = _f(10, "History depth of image and CameraInfo subscriptions (per camera): while callbacks lag, "
                          "older images are replaced by DDS without reaching the node.")


@dataclass
class NavigationConfig:
    """The costmap-ready cloud (``<prefix>/obstacles``) and its clearing rays (``<prefix>/clearing``)."""

    enabled: bool = _f(True, "Publish the navigation cloud and clearing rays after every keyframe.")
    frame: str = _f("base_link", "Frame of the navigation cloud; looked up in TF at each image stamp.")
    voxel_size_m: float = _f(0.05, "Voxel edge of the navigation cloud (one point per voxel; the costmap resolution).")
    max_points: int = _f(20_000, "At most this many points per navigation cloud (nearest voxels kept).")
    min_obstacle_height_m: float = _f(
        0.05, "Points lower than this above the ground are ground (removed); also the costmap's min height.")
    max_obstacle_height_m: float = _f(2.0, "Points higher than this above the ground are dropped (ceiling, overhangs).")
    min_range_m: float = _f(0.2, "Pixels nearer than this to their camera are dropped.")
    max_range_m: float = _f(
        3.0, "Pixels farther than this from their camera are dropped (range clip). 3 m: the sample costmap is a "
        "6 x 6 m rolling window (3 m each side; Nav2's voxel layer defaults are 2.5 m marking, 3 m raytracing) and "
        "stereo depth error grows with range squared (on the published plane-sweep depth at 5 m: 3-10x the points "
        "> 10 cm off a surface, docs/NAV2.md).")
    ground_height_m: float = _f(
        0.0, "Known height of the ground in the navigation frame (0 when the frame sits on the floor, e.g. "
        "base_footprint; minus the base height for a raised base_link).")
    fit_ground: bool = _f(
        True, "Refine the ground per keyframe with a RANSAC plane fit to pixels near ground_height_m "
        "(follows ramps, pitch and a wrong base height); falls back to ground_height_m when too few fit.")
    ground_fit_band_m: float = _f(0.15, "Only pixels within this of the known ground take part in the plane fit.")
    min_confidence: float = _f(
        0.52, "Published depth pixels below this confidence are not used (obstacles or clearing); never below "
        "fusion.confidence_threshold. Published confidence is in [0.5, 1]: 0.5 = every published pixel. The wrong-"
        "depth patches that make points > 2 voxels off a surface sit at the bottom (median 0.50-0.51 against "
        "0.71-0.86 for all obstacle pixels): 0.52 removed every such point on the synthetic scenes for 4-9 points "
        "fewer obstacle voxels (docs/NAV2.md); 0.5 keeps more at that risk.")
    well_triangulated_error_m: float = _f(
        0.005, "A published pixel below min_confidence is still used where its sources pin its depth: a matching "
        "error of 0.1 px moves it by at most this (the source image point moves >= 20 px per metre of depth). Wide "
        "triangulation, not the confidence, decides there: the low-confidence pixels that made points > 2 voxels off "
        "lie near the epipole of a camera moving along its axis. Measured up to +3 points of obstacle voxels kept, "
        "none > 2 voxels off; 0.01 kept more but let one point 10.1 cm off through in a turn (docs/NAV2.md). "
        "0 = off.")
    min_pixels_per_voxel: int = _f(
        1, "A voxel needs this many depth pixels to become a point (speckle filter; far voxels hold only 1-2 "
        "pixels at 320 px, so raise it only with high-resolution depth; the median filter handles speckle).")
    min_neighbour_points: int = _f(
        0, "0 = off; else a navigation point is kept only when at least this many other points lie within one "
        "voxel edge of it (3-D outlier test; on the published plane-sweep depth 2 cuts points > 2 voxels off a "
        "surface by 3x but loses ~3 % of the obstacle voxels, see docs/NAV2.md).")
    median_filter_px: int = _f(
        5, "Median window (0 = off, 3 or 5): a pixel whose depth differs from its neighbourhood's median by "
        "more than median_tolerance is not used (speckle, flying pixels at depth edges).")
    median_tolerance: float = _f(0.03, "Relative depth difference to the median allowed by median_filter_px.")
    clearing: bool = _f(
        True, "Also publish <prefix>/clearing: per camera, the end points of all confident rays (ground "
        "included) in that camera's optical frame, so a costmap raytraces free space from the camera.")

    def validate(self) -> None:
        if self.voxel_size_m <= 0 or self.max_points < 1 or self.min_pixels_per_voxel < 1:
            raise ConfigError("navigation: voxel_size_m must be > 0, max_points and min_pixels_per_voxel >= 1")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"navigation.min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.well_triangulated_error_m < 0:
            raise ConfigError(
                f"navigation.well_triangulated_error_m must be >= 0 (0 = off), got {self.well_triangulated_error_m}")
        if self.min_neighbour_points < 0:
            raise ConfigError(f"navigation.min_neighbour_points must be >= 0, got {self.min_neighbour_points}")
        if not self.min_obstacle_height_m < self.max_obstacle_height_m:
            raise ConfigError(
                f"navigation: expected min_obstacle_height_m < max_obstacle_height_m, got "
                f"{self.min_obstacle_height_m} and {self.max_obstacle_height_m}")
        if not 0 <= self.min_range_m < self.max_range_m:
            raise ConfigError(
                f"navigation: expected 0 <= min_range_m < max_range_m, got {self.min_range_m} and {self.max_range_m}")
        if self.median_filter_px not in (0, 1, 3, 5):
            raise ConfigError(f"navigation.median_filter_px must be 0, 1, 3 or 5, got {self.median_filter_px}")
        if not self.frame:
            raise ConfigError("parameter 'navigation.frame' is empty; name the costmap's robot frame, e.g. base_link")


@dataclass
class ReconConfig:
    cameras: list = _f([], "Camera names; they fill '{camera}' in topics and frames. Empty = find the cameras: "
                       "every image topic with a camera_info beside it (bag: the bag's topics; node: the ROS graph).")
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    map: MapConfig = field(default_factory=MapConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    qos: QosConfig = field(default_factory=QosConfig)
    navigation: NavigationConfig = field(default_factory=NavigationConfig)

    # ---- topic and frame names -------------------------------------------------------------
    def _per_camera(self, values: list, camera: str) -> str:
        if values and camera in self.cameras and self.cameras.index(camera) < len(values):
            return str(values[self.cameras.index(camera)])
        return ""

    def transport(self, camera: str) -> str:
        """'raw', 'compressed' or 'auto' (resolved against a bag or graph by io/cameras.py)."""
        t = self._per_camera(self.topics.transports, camera)
        return t or ("compressed" if self.topics.compressed else "auto")

    def image_topic(self, camera: str) -> str:
        explicit = self._per_camera(self.topics.image_topics, camera)
        if explicit:
            return explicit
        topic = self.topics.image.format(camera=camera)
        return f"{topic}/compressed" if self.transport(camera) == "compressed" else topic

    def camera_info_topic(self, camera: str) -> str:
        return self._per_camera(self.topics.camera_info_topics, camera) or self.topics.camera_info.format(camera=camera)

    def optical_frame(self, camera: str) -> str:
        return self.frames.optical.format(camera=camera)

    def output_topic(self, *parts: str) -> str:
        """Output topic resolved in the root namespace ('/recon/cloud'), as the bag tool records it.

        The node publishes relative prefixes relative to its namespace (``relative_output_topic``).
        """
        return "/".join(["", self.topics.output_prefix.strip("/"), *parts])

    def relative_output_topic(self, topic: str) -> str:
        """The name the node creates for ``topic`` (an ``output_topic``): relative when the prefix is."""
        return topic if self.topics.output_prefix.startswith("/") else topic.lstrip("/")

    def validate(self) -> None:
        """Raise ConfigError for values outside their choices or ranges."""
        for name, value, meta in iter_fields(self):
            choices = meta.get("choices")
            if choices and value not in choices:
                raise ConfigError(f"parameter '{name}' = {value!r}; expected one of {list(choices)}")
        for name in ("image_topics", "camera_info_topics", "transports"):
            values = getattr(self.topics, name)
            if values and len(values) != len(self.cameras):
                raise ConfigError(f"parameter 'topics.{name}' has {len(values)} entries for {len(self.cameras)} "
                                  f"cameras {self.cameras}; expected one per camera")
        bad = [t for t in self.topics.transports if t not in ("raw", "compressed", "auto")]
        if bad:
            raise ConfigError(f"parameter 'topics.transports': {bad}; expected 'raw', 'compressed' or 'auto'")
        not_names = [c for c in self.cameras if not isinstance(c, str) or not c.strip("/")]
        if not_names:
            raise ConfigError(
                f"parameter 'cameras' = {self.cameras}: {not_names} are not camera names; expected strings "
                "(YAML reads unquoted y, n, yes, no, on, off, true, false as booleans: quote such names)")
        if len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"parameter 'cameras' has duplicates: {self.cameras}")
        if not 0 < self.depth.min_depth_m < self.depth.max_depth_m:
            raise ConfigError(
                f"depth range: expected 0 < depth.min_depth_m < depth.max_depth_m, got "
                f"{self.depth.min_depth_m} and {self.depth.max_depth_m}"
            )
        if self.depth.zncc_window % 2 == 0:
            raise ConfigError(f"parameter 'depth.zncc_window' must be odd, got {self.depth.zncc_window}")
        if not 0 <= self.fusion.delay_keyframes < self.keyframes.buffer_size - int(self.depth.wait_for_next_keyframe):
            raise ConfigError("fusion.delay_keyframes must be >= 0 and < keyframes.buffer_size (minus 1 with "
                              "depth.wait_for_next_keyframe)")
        for name in ("keyframes.buffer_size", "runtime.queue_size", "sync.max_pending", "map.max_points"):
            if get_value(self, name) < 1:
                raise ConfigError(f"parameter '{name}' must be >= 1 (it bounds memory)")
        self.navigation.validate()
        if self.pose.source == "mvdust3r+" and self.cameras and len(self.cameras) * self.pose.window_keyframes < 4:
            raise ConfigError("pose.source 'mvdust3r+' needs >= 4 views: raise pose.window_keyframes")


class ConfigError(ValueError):
    """A configuration value is unknown, mistyped or out of range."""


def iter_fields(cfg: Any, prefix: str = ""):
    """Yield ``(dotted_name, value, metadata)`` for every leaf parameter."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from iter_fields(value, f"{name}.")
        else:
            yield name, value, dict(f.metadata)


def flatten(cfg: ReconConfig) -> dict[str, Any]:
    return {name: value for name, value, _ in iter_fields(cfg)}


def parameter_types(cfg: ReconConfig | None = None) -> dict[str, type]:
    """Python type of each parameter (from the default value), for ROS declarations and checks."""
    cfg = cfg or ReconConfig()
    return {name: type(value) for name, value, _ in iter_fields(cfg)}


def get_value(cfg: ReconConfig, name: str) -> Any:
    obj: Any = cfg
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _coerce(name: str, value: Any, expected: type) -> Any:
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif expected is str:
        if isinstance(value, str):
            return value
    elif expected is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
    raise ConfigError(f"parameter '{name}': expected {expected.__name__}, got {value!r} ({type(value).__name__})")


def set_value(cfg: ReconConfig, name: str, value: Any) -> None:
    """Set one dotted parameter with type checking; unknown names suggest the closest match."""
    types = parameter_types()
    if name not in types:
        close = difflib.get_close_matches(name, types, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown parameter '{name}'{hint}")
    parts = name.split(".")
    obj: Any = cfg
    for part in parts[:-1]:
        obj = getattr(obj, part)
    setattr(obj, parts[-1], _coerce(name, value, types[name]))


def _flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten_dict(v, f"{name}."))
        else:
            out[name] = v
    return out


def from_dict(values: dict[str, Any], base: ReconConfig | None = None) -> ReconConfig:
    """Config from nested or dotted dict values (unknown names raise ConfigError)."""
    cfg = copy.deepcopy(base) if base is not None else ReconConfig()
    for name, value in _flatten_dict(values).items():
        set_value(cfg, name, value)
    cfg.validate()
    return cfg


def yaml_parameters(path: str | Path) -> dict[str, Any]:
    """Parameters of a YAML file, plain or ROS style (``<node or /**>: ros__parameters: {...}``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    for value in data.values():
        if isinstance(value, dict) and "ros__parameters" in value:
            return dict(value["ros__parameters"] or {})
    return data


def load_yaml(path: str | Path, base: ReconConfig | None = None) -> ReconConfig:
    try:
        return from_dict(yaml_parameters(path), base)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def describe() -> str:
    """Human-readable list of every parameter, default and meaning (for --help and docs)."""
    lines = []
    for name, value, meta in iter_fields(ReconConfig()):
        choices = f" {{{', '.join(meta['choices'])}}}" if meta.get("choices") else ""
        lines.append(f"{name} = {value!r}{choices}\n    {meta.get('help', '')}")
    return "\n".join(lines)
