"""A box that moves once: the minimal dynamic scene for testing costmap clearing.

The box stands at ``before_xy`` until ``move_stamp_ns`` and at ``after_xy`` from then on (world = odom).
Both states are ordinary :class:`Scene` objects sharing one texture atlas; the moved one only shifts
the box's face origins, so its texture travels with it. :class:`MovingSceneDepth` is the exact depth of
the scene at each view's stamp (a perfect depth network for a dynamic scene, which multi-view stereo
cannot be: the box breaks the static-scene assumption between keyframes).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from recon_ros.pipeline.frames import View
from recon_ros.pipeline.sources import DepthEstimate
from recon_ros.synthetic.scene import _FACES_PER_BOX, Box, Scene, SceneParams


@dataclass(frozen=True)
class MovingBox:
    before_xy: tuple[float, float]
    after_xy: tuple[float, float]
    move_stamp_ns: int
    half: tuple[float, float, float] = (0.25, 0.25, 0.3)  # stands on the floor: centre z = half z

    def box(self, moved: bool) -> Box:
        x, y = self.after_xy if moved else self.before_xy
        return Box((float(x), float(y), float(self.half[2])), self.half)


class MovingBoxScene:
    """``at(stamp)`` -> the scene at that time (two prebuilt states)."""

    def __init__(self, params: SceneParams, moving: MovingBox):
        self.moving = moving
        before = Scene(params)
        before.objects.append(moving.box(moved=False))
        # Same seed as Scene.__init__: the existing faces get identical textures, the box's are appended.
        before._build_faces(np.random.default_rng([params.seed, 1]))
        self.before = before
        self.after = copy.copy(before)
        self.after.objects = [*before.objects[:-1], moving.box(moved=True)]
        faces = before._faces.copy()
        bi = len(before.objects)  # face block of the box: room is block 0, objects 1..n
        shift = np.array([*(np.subtract(moving.after_xy, moving.before_xy)), 0.0])
        faces[bi * _FACES_PER_BOX:(bi + 1) * _FACES_PER_BOX, :3] += shift
        self.after._faces = faces

    def at(self, stamp_ns: int) -> Scene:
        return self.after if stamp_ns >= self.moving.move_stamp_ns else self.before

    def render(self, stamp_ns: int, T_world_cam: np.ndarray, K: np.ndarray, width: int, height: int,
               supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
        return self.at(stamp_ns).render(T_world_cam, K, width, height, supersample)


class MovingSceneDepth:
    """Exact depth of a :class:`MovingBoxScene` at each view's own stamp and pose."""

    name = "ground_truth_moving"

    def __init__(self, scene: MovingBoxScene):
        self.scene = scene

    def estimate(self, ref: View, sources: list[View], depth_range: tuple[float, float]) -> DepthEstimate:
        w, h = ref.size
        _, depth = self.scene.render(ref.stamp_ns, ref.T_world_cam, ref.K, w, h)
        valid = (depth >= depth_range[0]) & (depth <= depth_range[1])
        return DepthEstimate(np.where(valid, depth, 0.0).astype(np.float32), valid.astype(np.float32), valid)
