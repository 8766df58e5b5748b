"""config/nav2_costmap.yaml and launch/nav2.launch.py agree with what recon_ros publishes.

Nav2 is not installable on the machines this is tested on, so the costmap is not run: the file is
checked field by field against the node's topics, frames, QoS and height band (config/default.yaml).
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from recon_ros.config import load_yaml
from recon_ros.io.outputs import output_topics

ROOT = Path(__file__).resolve().parent.parent
CFG = load_yaml(ROOT / "config" / "default.yaml")
NAV = CFG.navigation
COSTMAP = yaml.safe_load((ROOT / "config" / "nav2_costmap.yaml").read_text())["local_costmap"]["local_costmap"][
    "ros__parameters"]
LAYER = COSTMAP["voxel_layer"]
SOURCES = {name: LAYER[name] for name in LAYER["observation_sources"].split()}


def test_sources_subscribe_to_published_clouds() -> None:
    published = output_topics(CFG)
    assert {s["topic"] for s in SOURCES.values()} == {CFG.output_topic("obstacles"), CFG.output_topic("clearing")}
    for s in SOURCES.values():
        assert published[s["topic"]] == "sensor_msgs/msg/PointCloud2" and s["data_type"] == "PointCloud2"
        assert s["sensor_frame"] == ""  # ray origin = message frame: base_link / the camera optical frame


def test_marking_and_clearing_roles() -> None:
    by_topic = {s["topic"]: s for s in SOURCES.values()}
    obstacles, clearing = by_topic[CFG.output_topic("obstacles")], by_topic[CFG.output_topic("clearing")]
    assert obstacles["marking"] is True and obstacles["clearing"] is False
    assert clearing["marking"] is False and clearing["clearing"] is True


def test_frames_and_resolution_match_the_node() -> None:
    assert COSTMAP["global_frame"] == CFG.frames.odom
    assert COSTMAP["robot_base_frame"] == NAV.frame == "base_link"
    assert abs(COSTMAP["resolution"] - NAV.voxel_size_m) < 1e-9


def test_height_band_and_ranges_match_the_node() -> None:
    by_topic = {s["topic"]: s for s in SOURCES.values()}
    obstacles, clearing = by_topic[CFG.output_topic("obstacles")], by_topic[CFG.output_topic("clearing")]
    assert abs(obstacles["min_obstacle_height"] - NAV.min_obstacle_height_m) < 1e-9
    assert abs(obstacles["max_obstacle_height"] - NAV.max_obstacle_height_m) < 1e-9
    assert abs(LAYER["max_obstacle_height"] - NAV.max_obstacle_height_m) < 1e-9
    # The voxel grid must reach the top of the band, or the layer drops those points.
    assert LAYER["origin_z"] + LAYER["z_voxels"] * LAYER["z_resolution"] >= NAV.max_obstacle_height_m - 1e-9
    assert LAYER["z_voxels"] <= 16  # VoxelLayer's limit
    # Ground hits must pass the clearing source's height filter, or rays over free floor clear nothing.
    assert clearing["min_obstacle_height"] < -NAV.min_obstacle_height_m
    assert clearing["max_obstacle_height"] >= NAV.max_obstacle_height_m
    # Ranges are measured from the message frame: cover the range clip plus the camera's offset.
    assert obstacles["obstacle_max_range"] >= NAV.max_range_m
    assert clearing["raytrace_max_range"] >= NAV.max_range_m


def test_qos_is_compatible() -> None:
    # Nav2's observation buffers subscribe with sensor-data QoS (best effort, volatile); a reliable,
    # volatile publisher (recon_ros's clouds) matches both best-effort and reliable subscribers.
    assert CFG.qos.clouds == "reliable"
    assert CFG.output_topic("obstacles") not in (CFG.output_topic("map"), CFG.output_topic("path"))  # not latched


def test_nav2_launch_file_starts_recon_with_the_costmap_parameters() -> None:
    path = ROOT / "launch" / "nav2.launch.py"
    tree = ast.parse(path.read_text())
    compile(tree, str(path), "exec")
    consts = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {"recon_node", "nav2_costmap.yaml", "default.yaml", "nav2_costmap_2d", "local_costmap",
            "local_costmap/local_costmap", "navigation.frame", "costmap"} <= consts
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    args = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "ARGS")
    defaults = {k.value: v.elts[0] for k, v in zip(args.value.keys, args.value.values)}
    assert defaults["navigation_frame"].value == COSTMAP["robot_base_frame"]
