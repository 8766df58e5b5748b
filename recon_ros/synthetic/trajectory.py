"""Smooth planar robot trajectory for the synthetic room: a rounded loop driven at constant speed.

The loop is a "squircle" (|x/a|^4 + |y/b|^4 = 1) centred in the room: smooth everywhere (no curvature
jumps like a rounded rectangle), with long straight-ish sides and four turns. The scene generator keeps
every object at least a clearance away from this nominal path, so the trajectory needs no knowledge of
the scene. The speed is adjusted slightly so that one lap is a whole number of frames: poses then loop
exactly (pose i == pose i mod lap) while stamps keep increasing, which is what endurance runs want.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Default room footprint (x length, y width) in metres; the room is centred on the world origin.
DEFAULT_ROOM_XY: tuple[float, float] = (8.0, 6.0)
#: Distance from each wall to the loop's extreme point (x walls, y walls).
WALL_MARGIN_XY: tuple[float, float] = (1.7, 1.55)
#: Squircle exponent; 2 would be an ellipse, larger is boxier.
LOOP_EXPONENT: float = 4.0
#: Default robot speed along the loop.
DEFAULT_SPEED_MPS: float = 0.4
#: Default first stamp (an arbitrary but realistic epoch time, 2023-11-14).
DEFAULT_START_STAMP_NS: int = 1_700_000_000_000_000_000

_DENSE_SAMPLES = 20000


@dataclass(frozen=True)
class LoopPath:
    """The nominal loop, densely sampled and parametrised by arc length."""

    xy: np.ndarray  # [M, 2] points, M = _DENSE_SAMPLES + 1 (closed: last == first)
    s: np.ndarray  # [M] cumulative arc length, s[0] = 0, s[-1] = length
    heading: np.ndarray  # [M] unwrapped tangent direction (rad) for counter-clockwise travel
    length: float


@lru_cache(maxsize=8)
def loop_path(room_xy: tuple[float, float] = DEFAULT_ROOM_XY) -> LoopPath:
    """The nominal loop for a room of the given footprint (cached: it is pure and reused a lot)."""
    a = room_xy[0] / 2.0 - WALL_MARGIN_XY[0]
    b = room_xy[1] / 2.0 - WALL_MARGIN_XY[1]
    if a <= 0.3 or b <= 0.3:
        raise ValueError(f"room {room_xy} too small for the trajectory loop")
    theta = np.linspace(0.0, 2.0 * math.pi, _DENSE_SAMPLES + 1)
    c, s = np.cos(theta), np.sin(theta)
    # Polar form of the squircle: smooth in theta, unlike the |cos|^(2/p) parametrisation which bunches
    # samples near the axes.
    r = (np.abs(c / a) ** LOOP_EXPONENT + np.abs(s / b) ** LOOP_EXPONENT) ** (-1.0 / LOOP_EXPONENT)
    xy = np.stack([r * c, r * s], axis=1)
    xy[-1] = xy[0]
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    # Tangent by central differences on the closed curve.
    d = np.roll(xy[:-1], -1, axis=0) - np.roll(xy[:-1], 1, axis=0)
    heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    heading = np.concatenate([heading, [heading[0] + 2.0 * math.pi]])
    return LoopPath(xy=xy, s=cum, heading=heading, length=float(cum[-1]))


def lap_frames(rate_hz: float, speed_mps: float = DEFAULT_SPEED_MPS,
               room_xy: tuple[float, float] = DEFAULT_ROOM_XY) -> int:
    """Frames per lap: the loop length at `speed_mps`, rounded to a whole number of frames."""
    path = loop_path(tuple(room_xy))
    return max(8, int(round(path.length / speed_mps * rate_hz)))


def stamp_ns(index: int, rate_hz: float, start_stamp_ns: int = DEFAULT_START_STAMP_NS) -> int:
    """Stamp of frame `index`: exact integer nanoseconds, strictly increasing."""
    return int(start_stamp_ns) + int(round(index * 1e9 / rate_hz))


def pose_2d(T: np.ndarray) -> tuple[float, float, float]:
    """(x, y, yaw) of a planar 4x4 pose."""
    return float(T[0, 3]), float(T[1, 3]), math.atan2(T[1, 0], T[0, 0])


def _planar_pose(x: float, y: float, yaw: float) -> np.ndarray:
    T = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    T[:2, :2] = [[c, -s], [s, c]]
    T[0, 3], T[1, 3] = x, y
    return T


def trajectory(n_frames: int, rate_hz: float = 10.0, seed: int = 0, *,
               speed_mps: float = DEFAULT_SPEED_MPS,
               start_stamp_ns: int = DEFAULT_START_STAMP_NS,
               room_xy: tuple[float, float] = DEFAULT_ROOM_XY) -> list[tuple[int, np.ndarray]]:
    """`n_frames` samples (stamp_ns, T_odom_base) of the robot driving the loop at ~`speed_mps`.

    The seed picks the start point on the loop and the direction of travel. The robot faces its
    direction of motion; z = 0, roll = pitch = 0. Any `n_frames` works: beyond one lap the poses repeat
    exactly (see `lap_frames`) while the stamps keep increasing.
    """
    if n_frames < 0 or rate_hz <= 0 or speed_mps <= 0:
        raise ValueError("need n_frames >= 0, rate_hz > 0, speed_mps > 0")
    path = loop_path(tuple(room_xy))
    lap = lap_frames(rate_hz, speed_mps, room_xy)
    rng = np.random.default_rng(seed)
    s0 = float(rng.uniform(0.0, path.length))
    direction = 1.0 if rng.random() < 0.5 else -1.0
    out: list[tuple[int, np.ndarray]] = []
    for i in range(n_frames):
        # Arc length of frame i, using i mod lap so the loop closes bit-exactly.
        s = (s0 + direction * path.length * ((i % lap) / lap)) % path.length
        x = float(np.interp(s, path.s, path.xy[:, 0]))
        y = float(np.interp(s, path.s, path.xy[:, 1]))
        yaw = float(np.interp(s, path.s, path.heading))
        if direction < 0:
            yaw += math.pi
        yaw = math.atan2(math.sin(yaw), math.cos(yaw))
        out.append((stamp_ns(i, rate_hz, start_stamp_ns), _planar_pose(x, y, yaw)))
    return out
