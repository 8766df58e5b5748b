"""The ROS package around the code: config YAMLs, msg/srv, RViz layout, package.xml, CMakeLists,
launch files and the node module's behaviour on a machine without rclpy."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from recon_ros.config import ReconConfig, iter_fields, load_yaml, parameter_types, yaml_parameters
from recon_ros.io.messages import MessageKit, make_keyframe_depth, make_recon_status, stamp_to_ns
from recon_ros.io.outputs import output_topics

ROOT = Path(__file__).resolve().parent.parent
# recon_ros parameter files (nav2_costmap.yaml holds Nav2's parameters: test_nav2_config.py checks it)
CONFIGS = sorted(p for p in (ROOT / "config").glob("*.yaml") if p.name != "nav2_costmap.yaml")


def flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ---- config/ ----------------------------------------------------------------------------------------
def test_the_three_configs_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"default.yaml", "desktop.yaml", "jetson_orin.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parameters_exist_with_strict_ros_types(path: Path) -> None:
    text = path.read_text()
    assert "/**:" in text and "ros__parameters:" in text
    cfg = load_yaml(path)  # unknown names, bad choices and ranges raise ConfigError
    assert isinstance(cfg, ReconConfig)
    types = parameter_types()
    # rclpy does not coerce: an int in the file for a double parameter makes the node refuse it.
    for name, value in flat(yaml_parameters(path)).items():
        assert name in types, f"{path.name}: unknown parameter {name}"
        expected = types[name]
        if expected is list:
            assert isinstance(value, list) and value and all(isinstance(v, str) for v in value), (
                f"{path.name}: {name} must be a non-empty list of strings (a ROS string array)")
        else:
            assert type(value) is expected, f"{path.name}: {name} = {value!r} is {type(value).__name__}, " \
                                            f"the parameter is {expected.__name__}"


def test_default_yaml_lists_every_parameter_with_its_default() -> None:
    values = flat(yaml_parameters(ROOT / "config" / "default.yaml"))
    for name, default, _ in iter_fields(ReconConfig()):
        if isinstance(default, list) and not default:
            continue  # ROS YAML can't express an empty array; documented as a comment instead
        assert name in values, f"default.yaml misses {name}"
        assert values[name] == default, f"default.yaml: {name} = {values[name]!r}, schema default {default!r}"


# ---- msg/ and srv/ ----------------------------------------------------------------------------------
def keyframe_depth(kit: MessageKit) -> Any:
    depth = np.linspace(0.5, 4.0, 12, dtype=np.float32).reshape(3, 4)
    depth[0, 0] = np.nan
    T = np.eye(4)
    T[:3, 3] = [1.0, -2.0, 0.5]
    K = np.array([[100.0, 0, 2], [0, 100.0, 1.5], [0, 0, 1]])
    conf = np.full((3, 4), 0.5, np.float32)
    return make_keyframe_depth(kit, keyframe_id=7, camera="front", depth=depth, confidence=conf, K=K,
                               T_map_cam=T, stamp_ns=1_700_000_000_123_456_789, frame_id="front_optical_frame")


STATUS = {"images_received": 40, "frame_sets": 10, "keyframes": 3, "buffered_keyframes": 3,
          "dropped": {"queue_full": 4, "bad_encoding": 1}, "stage_latency_ms": {"pose": 1.5, "depth": 80.25},
          "map_points": 12345, "map_voxel_size": 0.03, "pose_source": "tf", "depth_source": "planesweep",
          "backend": "torch", "scale": 1.0, "scale_residual_m": 0.0}


def test_custom_messages_round_trip_through_the_rosbags_typestore() -> None:
    kit = MessageKit.for_rosbags()
    store = kit.typestore
    msg = keyframe_depth(kit)
    back = store.deserialize_cdr(store.serialize_cdr(msg, "recon_ros/msg/KeyframeDepth"), "recon_ros/msg/KeyframeDepth")
    assert back.keyframe_id == 7 and back.camera_name == "front"
    assert stamp_to_ns(back.header.stamp) == 1_700_000_000_123_456_789
    d = np.frombuffer(back.depth.data, np.float32).reshape(3, 4)
    assert np.isnan(d[0, 0]) and d[2, 3] == pytest.approx(4.0)
    assert back.depth.encoding == "32FC1" and back.camera_info.width == 4
    assert back.pose.position.y == pytest.approx(-2.0)
    status = make_recon_status(kit, STATUS, 5, "map")
    back = store.deserialize_cdr(store.serialize_cdr(status, "recon_ros/msg/ReconStatus"), "recon_ros/msg/ReconStatus")
    assert list(back.drop_reasons) == ["queue_full", "bad_encoding"] and list(back.drop_counts) == [4, 1]
    assert list(back.stage_names) == ["pose", "depth"]
    assert back.stage_latency_ms[1] == pytest.approx(80.25) and back.map_points == 12345


def test_custom_messages_decode_with_mcap_ros2(tmp_path: Path) -> None:
    """An independent decoder (Foxglove's) reads what we write, field for field."""
    pytest.importorskip("mcap_ros2")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from recon_ros.io.bag import BagWriter

    kit = MessageKit.for_rosbags()
    with BagWriter(tmp_path / "bag", kit) as bag:
        bag.write("/recon/keyframe_depth", keyframe_depth(kit), 1)
        bag.write("/recon/status", make_recon_status(kit, STATUS, 5, "map"), 2)
    files = list((tmp_path / "bag").glob("*.mcap"))
    assert len(files) == 1
    seen = {}
    with open(files[0], "rb") as f:
        for _, channel, _, msg in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            seen[channel.topic] = msg
    kd, st = seen["/recon/keyframe_depth"], seen["/recon/status"]
    assert kd.keyframe_id == 7 and kd.camera_name == "front" and kd.header.frame_id == "front_optical_frame"
    assert kd.depth.height == 3 and kd.depth.width == 4 and kd.camera_info.k[0] == 100.0
    assert list(st.drop_counts) == [4, 1] and st.pose_source == "tf"


def test_save_map_service_definition_parses() -> None:
    from rosbags.typesys import get_types_from_msg

    text = (ROOT / "srv" / "SaveMap.srv").read_text()
    request, response = text.split("\n---\n")
    (req,) = get_types_from_msg(request, "recon_ros/msg/SaveMap_Request").values()
    (res,) = get_types_from_msg(response, "recon_ros/msg/SaveMap_Response").values()
    assert [f[0] for f in req[1]] == ["path"]
    assert [f[0] for f in res[1]] == ["success", "message", "path", "points"]


# ---- rviz/ ------------------------------------------------------------------------------------------
def rviz_topics(node: Any) -> list[str]:
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Topic" and isinstance(v, dict):
                found.append(v["Value"])
            else:
                found += rviz_topics(v)
    elif isinstance(node, list):
        for v in node:
            found += rviz_topics(v)
    return found


def test_rviz_shows_only_topics_the_node_publishes() -> None:
    layout = yaml.safe_load((ROOT / "rviz" / "recon.rviz").read_text())
    cfg = ReconConfig()
    cfg.cameras = ["front", "left", "right", "back"]  # the preset shows the demo rig's front camera
    topics = rviz_topics(layout)
    published = output_topics(cfg)
    assert topics and set(topics) <= set(published), set(topics) - set(published)
    assert {cfg.output_topic("map"), cfg.output_topic("cloud"), cfg.output_topic("path")} <= set(topics)
    assert any("/depth/" in t and t.endswith("/image") for t in topics)
    displays = {d["Class"]: d for d in layout["Visualization Manager"]["Displays"]}
    assert "rviz_default_plugins/TF" in displays
    assert layout["Visualization Manager"]["Global Options"]["Fixed Frame"] == cfg.frames.map
    for d in layout["Visualization Manager"]["Displays"]:  # latched topics need a matching durability
        if d.get("Topic", {}).get("Value") in (cfg.output_topic("map"), cfg.output_topic("path")):
            assert d["Topic"]["Durability Policy"] == "Transient Local"


# ---- package.xml and CMakeLists.txt ------------------------------------------------------------------
def package_deps() -> tuple[ET.Element, dict[str, set[str]]]:
    root = ET.parse(ROOT / "package.xml").getroot()
    deps: dict[str, set[str]] = {}
    for el in root:
        deps.setdefault(el.tag, set()).add((el.text or "").strip())
    return root, deps


def test_package_xml_is_format_3_ament_cmake_with_interfaces() -> None:
    root, deps = package_deps()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "recon_ros"
    assert root.find("export/build_type").text == "ament_cmake"
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= deps["buildtool_depend"]
    assert deps["member_of_group"] == {"rosidl_interface_packages"}
    run = deps.get("depend", set()) | deps.get("exec_depend", set())
    required = {"rclpy", "sensor_msgs", "geometry_msgs", "nav_msgs", "tf2_msgs", "std_msgs", "std_srvs",
                "diagnostic_msgs", "builtin_interfaces", "rosidl_default_runtime", "launch", "launch_ros", "ros2bag",
                "rviz2", "lifecycle_msgs", "python3-numpy", "python3-opencv", "python3-scipy", "python3-yaml"}
    assert required <= run, required - run
    # tf2_ros is not used (and not available from the ROS wheels): the node subscribes to /tf itself
    assert not {"tf2_ros", "tf2_ros_py"} & run
    assert {"launch_testing", "launch_testing_ros", "ament_cmake_pytest", "python3-pytest"} <= deps["test_depend"]


# Python module -> package.xml key, for modules whose package is named differently.
MODULE_PACKAGE = {"tf2_ros": "tf2_ros_py", "cv2": "python3-opencv", "numpy": "python3-numpy", "yaml": "python3-yaml",
                  "scipy": "python3-scipy"}
ROS_MODULES = {"rclpy", "tf2_ros", "rcl_interfaces", "std_srvs", "sensor_msgs", "geometry_msgs", "nav_msgs",
               "diagnostic_msgs", "tf2_msgs", "std_msgs", "builtin_interfaces", "lifecycle_msgs", "launch",
               "launch_ros", "launch_testing", "launch_testing_ros"}


def imported_ros_modules(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        mods |= {n.split(".")[0] for n in names if n.split(".")[0] in ROS_MODULES}
    return mods


def test_package_xml_declares_what_the_node_and_launch_files_import() -> None:
    _, deps = package_deps()
    run = deps.get("depend", set()) | deps.get("exec_depend", set())
    sources = [*(ROOT / "recon_ros" / "nodes").glob("*.py"), *(ROOT / "launch").glob("*.py")]
    used = set().union(*(imported_ros_modules(p) for p in sources))
    assert {"rclpy", "tf2_msgs", "launch", "launch_ros", "lifecycle_msgs"} <= used  # the scan works
    assert "tf2_ros" not in used
    missing = {m for m in used if MODULE_PACKAGE.get(m, m) not in run}
    assert not missing, f"imported but not in package.xml: {missing}"
    # message packages the node resolves by name through MessageKit.for_rclpy()
    for type_name in set(output_topics(ReconConfig()).values()) | {"diagnostic_msgs/msg/DiagnosticArray",
                                                                    "tf2_msgs/msg/TFMessage"}:
        pkg = type_name.split("/")[0]
        assert pkg == "recon_ros" or pkg in run, pkg


def test_cmakelists_generates_every_interface_and_installs_the_package() -> None:
    text = (ROOT / "CMakeLists.txt").read_text()
    for p in [*(ROOT / "msg").glob("*.msg"), *(ROOT / "srv").glob("*.srv")]:
        assert f'"{p.parent.name}/{p.name}"' in text, f"{p.name} not in rosidl_generate_interfaces"
    # rosidl already installs a Python package named recon_ros: ament_python_install_package(recon_ros)
    # would define the same target twice and fail at configure (Humble, Jazzy). The sources go into
    # that same package directory instead (the colcon build in the ROS suite proves it configures).
    assert not re.search(r"^\s*ament_python_install_package\(", text, re.M)
    into_package = r"install\(DIRECTORY \$\{PROJECT_NAME\}/\s+DESTINATION \$\{PYTHON_INSTALL_DIR\}/\$\{PROJECT_NAME\}"
    assert re.search(into_package, text)
    assert re.search(r"install\(DIRECTORY launch config rviz", text)
    for program in re.findall(r"install\(PROGRAMS (\S+)", text):
        script = ROOT / program
        assert script.read_text().startswith("#!/usr/bin/env python3")
        assert os.access(script, os.X_OK), f"{program} is not executable"
        assert 'if __name__ == "__main__":' in script.read_text()
    for name in re.findall(r"foreach\(_test ([^)]*)\)", text)[0].split():
        assert (ROOT / "test" / f"{name}.py").exists(), name


def test_launch_files_compile_and_declare_the_documented_arguments() -> None:
    args = {}
    for name in ("recon.launch.py", "bag_replay.launch.py", "recon_jetson.launch.py"):
        path = ROOT / "launch" / name
        tree = ast.parse(path.read_text())
        compile(tree, str(path), "exec")
        args[name] = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    assert {"config", "namespace", "cameras", "backend", "use_sim_time"} <= args["recon.launch.py"]
    assert {"bag", "--clock", "rviz2", "recon.rviz"} <= args["bag_replay.launch.py"]
    assert "jetson_orin.yaml" in args["recon_jetson.launch.py"]


# ---- the node module without rclpy -------------------------------------------------------------------
BLOCK_RCLPY = """
import sys
class Block:  # make rclpy unimportable even on a machine with ROS sourced
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('rclpy', 'tf2_ros'):
            raise ImportError(f"No module named '{name}'")
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize("call", ["main()", "ReconNode()"])
def test_node_without_rclpy_raises_a_clear_import_error(call: str) -> None:
    code = BLOCK_RCLPY + f"""
import recon_ros.nodes.recon_node as m   # importing the module itself must work
try:
    m.{call}
except ImportError as exc:
    print("IMPORT_ERROR:", exc)
else:
    print("NO_ERROR")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("IMPORT_ERROR: rclpy is required"), line
    assert "source /opt/ros/<distro>/setup.bash" in line


def test_setup_py_installs_the_ros_data_files() -> None:
    text = (ROOT / "setup.py").read_text()
    for folder in ("launch", "config", "rviz", "msg", "srv"):
        assert f'share/{{PACKAGE}}/{folder}"' in text, folder
    assert "recon_node = recon_ros.nodes.recon_node:main" in text


@pytest.mark.parametrize(("env", "expected"), [({}, "1000"), ({"GOMP_SPINCOUNT": "50"}, "50"),
                                               ({"OMP_WAIT_POLICY": "ACTIVE"}, None)])
def test_short_openmp_spin_unless_the_user_chose(env: dict[str, str], expected: str | None) -> None:
    """recon_ros sets GOMP_SPINCOUNT=1000 before torch loads (measured: 0.89 -> 0.50 s per view beside a
    busy process, same speed idle); a user's GOMP_SPINCOUNT or OMP_WAIT_POLICY is left as it is."""
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", "import os, recon_ros; print(os.environ.get('GOMP_SPINCOUNT'))"],
                         env={**base, **env}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(expected)
