"""Procedural textured indoor scene with an analytic, vectorised ray caster: exact ground truth.

The world is a closed box room (x in [-L/2, L/2], y in [-W/2, W/2], z in [0, H]; z up, REP-103) holding
seeded boxes: some standing on the floor (axis-aligned or yaw-rotated) and some wall shelves floating
above it. Every face carries its own texture, generated once at construction and stored in a texel
atlas indexed by the face's 2D coordinates in METRES, so a 3D point looks the same from every view
(Lambertian; a fixed per-face shading factor is baked in). Rendering casts one exact ray per pixel centre
for depth and ss x ss rays per pixel for the anti-aliased colour.
"""

from __future__ import annotations

import colorsys
import json
import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from recon_ros.synthetic.trajectory import DEFAULT_ROOM_XY, loop_path

# Faces of a box are numbered axis * 2 + side, side 1 = the +axis face. For the room box the faces are
# seen from inside (normals pointing inwards), for objects from outside.
_FACES_PER_BOX = 6
_HIT_EPS = 1e-6
_LIGHT_DIR = np.array([0.35, 0.55, 0.76]) / np.linalg.norm([0.35, 0.55, 0.76])


@dataclass(frozen=True)
class SceneParams:
    """Everything needed to rebuild a scene bit-exactly (saved as JSON beside ground truth)."""

    seed: int = 0
    room: tuple[float, float, float] = (DEFAULT_ROOM_XY[0], DEFAULT_ROOM_XY[1], 3.0)
    n_floor_boxes: int = 7
    n_shelves: int = 3
    #: Minimum horizontal distance from the robot's nominal loop to any object footprint.
    clearance_m: float = 0.8
    #: Atlas resolution; textures are smooth at this scale (finest noise octave is several texels).
    texel_m: float = 0.01
    #: Finest noise scale: small enough for stereo signal at 1 m, large enough not to alias at 8 m.
    finest_scale_m: float = 0.03

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SceneParams:
        d = json.loads(text)
        d["room"] = tuple(d["room"])
        return cls(**d)


@dataclass(frozen=True)
class Box:
    """An oriented box: centre, half extents along its own axes, yaw about world z (rad)."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float = 0.0

    def rotation(self) -> np.ndarray:
        """R_world_box (3x3)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def corners(self) -> np.ndarray:
        """The 8 corners in world coordinates, [8, 3]."""
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
        return (signs * np.asarray(self.half)) @ self.rotation().T + np.asarray(self.center)


def _box_sdf(points: np.ndarray, box: Box) -> np.ndarray:
    """Exact signed distance (negative inside) from world points [N, 3] to a box."""
    local = (points - np.asarray(box.center)) @ box.rotation()
    q = np.abs(local) - np.asarray(box.half)
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    inside = np.minimum(q.max(axis=1), 0.0)
    return outside + inside


def _footprint_distance(xy: np.ndarray, box: Box) -> np.ndarray:
    """Horizontal distance from 2D points [N, 2] to the box footprint (0 inside)."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    d = xy - np.asarray(box.center[:2])
    local = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)
    q = np.maximum(np.abs(local) - np.asarray(box.half[:2]), 0.0)
    return np.linalg.norm(q, axis=1)


# ----------------------------------------------------------------------------------------------------
# Layout


def _layout(params: SceneParams, rng: np.random.Generator) -> list[Box]:
    """Seeded object placement: rejection sampling against the room, the robot loop and other objects."""
    lx, ly, lz = params.room
    path_xy = loop_path((lx, ly)).xy[::4]  # ~2.5 mm spacing: plenty for a clearance check
    # A little more than the advertised clearance so interpolation between path samples can't break it.
    need = params.clearance_m + 0.05
    boxes: list[Box] = []

    def fits(box: Box) -> bool:
        corners = box.corners()
        if (np.abs(corners[:, 0]) > lx / 2 + 1e-9).any() or (np.abs(corners[:, 1]) > ly / 2 + 1e-9).any():
            return False
        if corners[:, 2].max() > lz - 0.2:
            return False
        if _footprint_distance(path_xy, box).min() < need:
            return False
        for other in boxes:
            # Bounding-circle separation in xy unless their height ranges are disjoint: conservative and
            # keeps objects from touching, so distance_to_surface stays exact.
            r1, r2 = math.hypot(*box.half[:2]), math.hypot(*other.half[:2])
            gap_xy = math.hypot(box.center[0] - other.center[0], box.center[1] - other.center[1])
            z_overlap = abs(box.center[2] - other.center[2]) < box.half[2] + other.half[2] + 0.05
            if z_overlap and gap_xy < r1 + r2 + 0.05:
                return False
        return True

    for _ in range(params.n_floor_boxes):
        for _attempt in range(400):
            hx, hy = rng.uniform(0.15, 0.5, size=2)
            hz = rng.uniform(0.15, 0.9)
            yaw = 0.0 if rng.random() < 0.4 else float(rng.uniform(-math.pi / 4, math.pi / 4))
            x = rng.uniform(-lx / 2, lx / 2)
            y = rng.uniform(-ly / 2, ly / 2)
            box = Box((float(x), float(y), float(hz)), (float(hx), float(hy), float(hz)), yaw)
            if fits(box):
                boxes.append(box)
                break

    for _ in range(params.n_shelves):
        for _attempt in range(400):
            along, depth, thick = rng.uniform(0.3, 0.75), rng.uniform(0.12, 0.22), rng.uniform(0.06, 0.25)
            z = rng.uniform(1.0, lz - 0.6)
            wall = int(rng.integers(4))
            if wall < 2:  # wall at x = -/+ lx/2: shelf runs along y
                sign = -1.0 if wall == 0 else 1.0
                pos = rng.uniform(-ly / 2 + along, ly / 2 - along)
                box = Box((float(sign * (lx / 2 - depth)), float(pos), float(z)),
                          (float(depth), float(along), float(thick)))
            else:  # wall at y = -/+ ly/2: shelf runs along x
                sign = -1.0 if wall == 2 else 1.0
                pos = rng.uniform(-lx / 2 + along, lx / 2 - along)
                box = Box((float(pos), float(sign * (ly / 2 - depth)), float(z)),
                          (float(along), float(depth), float(thick)))
            if fits(box):
                boxes.append(box)
                break
    return boxes


# ----------------------------------------------------------------------------------------------------
# Textures


def _noise(rng: np.random.Generator, h: int, w: int, scale_texels: float) -> np.ndarray:
    """Zero-mean, unit-std value noise of feature size `scale_texels`: bicubic upsampling of white noise."""
    f = max(scale_texels, 1.0)
    gh, gw = int(math.ceil(h / f)) + 4, int(math.ceil(w / f)) + 4
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    up = cv2.resize(grid, (int(round(gw * f)), int(round(gh * f))), interpolation=cv2.INTER_CUBIC)
    off = int(round(2 * f))  # skip the border where cubic interpolation sees the grid edge
    out = up[off:off + h, off:off + w]
    return (out - out.mean()) / (out.std() + 1e-6)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32)


def _face_texture(rng: np.random.Generator, h: int, w: int, params: SceneParams, shade: float) -> np.ndarray:
    """An [h, w, 3] float32 RGB texture in [0, 255]: coloured multi-octave noise with sharp blobs."""
    t = params.texel_m
    base = _hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.25, 0.65), rng.uniform(0.55, 0.85))
    blob = _hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.95))
    # Luminance: octaves from 0.8 m down to the finest scale; the fine octaves carry enough energy that
    # a 7x7 window at 1 m still has contrast, the coarse ones make matches globally unique.
    scales = [0.8, 0.3, 0.12, 0.06, params.finest_scale_m]
    amps = [0.30, 0.25, 0.22, 0.20, 0.20]
    lum = np.zeros((h, w), np.float32)
    for sc, a in zip(scales, amps):
        lum += a * _noise(rng, h, w, sc / t)
    # Multiplicative (log-normal) luminance never goes black, so dark regions keep their texture.
    lum = np.exp(0.5 * lum / math.sqrt(sum(a * a for a in amps)))
    # Low-frequency hue variation per channel.
    tint = 1.0 + 0.18 * np.stack([_noise(rng, h, w, 0.4 / t) for _ in range(3)], axis=2)
    rgb = base[None, None, :] * tint * lum[:, :, None]
    # Sharp-edged blobs of a contrasting colour (thresholded mid-scale noise), themselves noise-modulated.
    mask = _noise(rng, h, w, 0.15 / t) > rng.uniform(0.5, 1.0)
    blob_rgb = blob[None, None, :] * (1.0 + 0.25 * _noise(rng, h, w, params.finest_scale_m / t))[:, :, None]
    rgb = np.where(mask[:, :, None], blob_rgb, rgb)
    # Soft tone curve instead of clipping: highlights compress but never saturate into flat patches.
    return (255.0 * (1.0 - np.exp(-1.6 * rgb * shade))).astype(np.float32)


def _shelf_pack(sizes: list[tuple[int, int]], width: int = 2048) -> list[tuple[int, int]]:
    """Top-left (x, y) of each (h, w) rectangle packed into rows ("shelves") of an atlas `width` wide."""
    width = max(width, max(w for _, w in sizes))
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][0])  # tallest first: little waste per shelf
    out: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    x = y = shelf_h = 0
    for i in order:
        h, w = sizes[i]
        if x + w > width:
            x, y, shelf_h = 0, y + shelf_h, 0
        out[i] = (x, y)
        x, shelf_h = x + w, max(shelf_h, h)
    return out


# ----------------------------------------------------------------------------------------------------
# Scene


class Scene:
    """The room plus objects; `render` ray-casts it, `distance_to_surface`/`sample_surface` measure it."""

    def __init__(self, params: SceneParams | None = None, *, seed: int | None = None) -> None:
        if params is None:
            params = SceneParams() if seed is None else SceneParams(seed=int(seed))
        elif seed is not None:
            raise ValueError("pass either params or seed, not both")
        self.params = params
        lx, ly, lz = params.room
        rng = np.random.default_rng(params.seed)
        self.room = Box((0.0, 0.0, lz / 2), (lx / 2, ly / 2, lz / 2), 0.0)
        self.objects: list[Box] = _layout(params, rng)
        self._build_faces(np.random.default_rng([params.seed, 1]))

    # -- construction -----------------------------------------------------------------------------
    def _build_faces(self, rng: np.random.Generator) -> None:
        """Face table (origin, u/v axes, size, atlas slot) and the texel atlas for room + objects."""
        t = self.params.texel_m
        boxes = [self.room, *self.objects]
        table, textures = [], []
        for bi, box in enumerate(boxes):
            R = box.rotation()
            c, hlf = np.asarray(box.center), np.asarray(box.half)
            for axis in range(3):
                # Horizontal faces: (u, v) = (x, y); vertical faces: u horizontal, v = z (up).
                ua, va = {0: (1, 2), 1: (0, 2), 2: (0, 1)}[axis]
                for side in (0, 1):
                    sgn = 1.0 if side else -1.0
                    local_origin = np.zeros(3)
                    local_origin[axis] = sgn * hlf[axis]
                    local_origin[ua], local_origin[va] = -hlf[ua], -hlf[va]
                    normal = R[:, axis] * sgn * (-1.0 if bi == 0 else 1.0)  # room faces point inwards
                    shade = 0.72 + 0.28 * max(0.0, float(normal @ _LIGHT_DIR)) + (0.05 if bi == 0 else 0.0)
                    su, sv = 2 * hlf[ua], 2 * hlf[va]
                    # +2 texels: a guard band so bilinear taps at the face edge stay inside this face.
                    w, h = int(math.ceil(su / t)) + 2, int(math.ceil(sv / t)) + 2
                    textures.append(_face_texture(rng, h, w, self.params, shade))
                    table.append(np.concatenate([c + R @ local_origin, R[:, ua], R[:, va], [su, sv, w, h]]))
        corners = _shelf_pack([tex.shape[:2] for tex in textures])
        atlas_h = max(y + tex.shape[0] for (_, y), tex in zip(corners, textures))
        atlas_w = max(x + tex.shape[1] for (x, _), tex in zip(corners, textures))
        if max(atlas_h, atlas_w) >= 32767:  # cv2.remap indexes the source with 16-bit coordinates
            raise ValueError("texture atlas too large for cv2.remap; raise texel_m")
        # uint8 RGB atlas: 4x smaller than float and cv2.remap samples it fastest.
        atlas = np.zeros((atlas_h, atlas_w, 3), np.uint8)
        for (x, y), tex in zip(corners, textures):
            atlas[y:y + tex.shape[0], x:x + tex.shape[1]] = np.clip(tex + 0.5, 0, 255).astype(np.uint8)
        self._atlas = atlas
        # Face table columns: origin(3) u_axis(3) v_axis(3) size_u size_v tex_w tex_h atlas_x atlas_y.
        self._faces = np.concatenate([np.array(table), np.array(corners, float)], axis=1)
        self._face_area = self._faces[:, 9] * self._faces[:, 10]

    @property
    def boxes(self) -> list[Box]:
        """Room first, then objects; face id f belongs to boxes[f // 6]."""
        return [self.room, *self.objects]

    # -- ray casting --------------------------------------------------------------------------------
    def _cast(self, T_world_cam: np.ndarray, K: np.ndarray, us: np.ndarray, vs: np.ndarray,
              dtype: type) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Cast rays K^-1 [u, v, 1] for the grid us x vs. Returns (t, face id, world dirs).

        Directions are not normalised, so with a standard K (last row 0 0 1) t is the optical-frame
        depth of the hit.
        """
        R = np.asarray(T_world_cam, np.float64)[:3, :3]
        o = np.asarray(T_world_cam, np.float64)[:3, 3]
        M = R @ np.linalg.inv(K)
        U = us.astype(dtype)[None, :]
        V = vs.astype(dtype)[:, None]
        D = tuple((M[i, 0] * U + M[i, 1] * V + M[i, 2]).astype(dtype) for i in range(3))
        t, face = self._cast_room(o, D)
        for bi, box in enumerate(self.objects, start=1):
            sl = self._screen_rect(box, T_world_cam, K, us, vs)
            if sl is not None:
                self._cast_box(o, D, box, bi * _FACES_PER_BOX, sl, t, face)
        return t, face, D

    def _cast_room(self, o: np.ndarray, D: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Exit distance from inside the room box and the face it exits through."""
        lo = np.asarray(self.room.center) - np.asarray(self.room.half)
        hi = np.asarray(self.room.center) + np.asarray(self.room.half)
        ts = []
        with np.errstate(divide="ignore"):
            for i in range(3):
                inv = 1.0 / D[i]
                # max of both slab planes = the one in front; D = +-0 gives +inf, as it should.
                ts.append(np.maximum((lo[i] - o[i]) * inv, (hi[i] - o[i]) * inv))
        tx, ty, tz = ts
        face = np.where((tx <= ty) & (tx <= tz), D[0] > 0,
                        np.where(ty <= tz, 2 + (D[1] > 0), 4 + (D[2] > 0))).astype(np.int32)
        t = np.minimum(np.minimum(tx, ty), tz)
        return t, face

    @staticmethod
    def _screen_rect(box: Box, T_world_cam: np.ndarray, K: np.ndarray, us: np.ndarray,
                     vs: np.ndarray) -> tuple[slice, slice] | None:
        """Rows/columns of the ray grid that can hit the box (None: box behind the camera)."""
        T_cam_world = np.linalg.inv(T_world_cam)
        pc = box.corners() @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
        z = pc[:, 2]
        if (z <= 1e-9).all():
            return None
        if (z <= 1e-3).any():  # straddles the camera plane: test every ray
            return slice(0, len(vs)), slice(0, len(us))
        uv = pc @ K.T
        u, v = uv[:, 0] / z, uv[:, 1] / z
        c0, c1 = np.searchsorted(us, u.min() - 1.0), np.searchsorted(us, u.max() + 1.0, side="right")
        r0, r1 = np.searchsorted(vs, v.min() - 1.0), np.searchsorted(vs, v.max() + 1.0, side="right")
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(int(r0), int(r1)), slice(int(c0), int(c1))

    @staticmethod
    def _cast_box(o: np.ndarray, D: tuple[np.ndarray, ...], box: Box, face0: int,
                  sl: tuple[slice, slice], t: np.ndarray, face: np.ndarray) -> None:
        """Slab test of the rays in `sl` against an object box; updates t/face in place where nearer."""
        c, s = math.cos(box.yaw), math.sin(box.yaw)
        dx, dy, dz = D[0][sl], D[1][sl], D[2][sl]
        rel = o - np.asarray(box.center)
        ol = (c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2])
        dl = (c * dx + s * dy, -s * dx + c * dy, dz)
        near, far = [], []
        with np.errstate(divide="ignore", invalid="ignore"):
            for i in range(3):
                inv = 1.0 / dl[i]
                t1 = (-box.half[i] - ol[i]) * inv
                t2 = (box.half[i] - ol[i]) * inv
                near.append(np.minimum(t1, t2))
                far.append(np.maximum(t1, t2))
        tn = np.maximum(np.maximum(near[0], near[1]), near[2])
        tf = np.minimum(np.minimum(far[0], far[1]), far[2])
        tsl = t[sl]
        hit = (tn <= tf) & (tn > _HIT_EPS) & (tn < tsl)
        if not hit.any():
            return
        axis = np.where((near[0] >= near[1]) & (near[0] >= near[2]), 0, np.where(near[1] >= near[2], 1, 2))
        # Entering through the face that looks at the ray: the +axis face when the ray runs towards -axis.
        d_axis = np.choose(axis, dl)
        fid = face0 + axis * 2 + (d_axis < 0)
        tsl[hit] = tn[hit]
        face[sl][hit] = fid[hit]

    def _shade(self, o: np.ndarray, D: tuple[np.ndarray, ...], t: np.ndarray, face: np.ndarray) -> np.ndarray:
        """Bilinear atlas lookup of the hit points. Returns [..., 3] float32 RGB in [0, 255]."""
        fl = face.ravel()
        tt = t.ravel().astype(np.float32)
        d = [x.ravel().astype(np.float32) for x in D]
        # Texel coordinate u = ((o - origin) + t D) . u_axis / texel, with the per-face parts folded into
        # small tables so each ray needs only cheap 1D gathers (np.take: faster than fancy indexing).
        F = self._faces
        inv = 1.0 / self.params.texel_m
        maps = []
        for ax0, size_col, corner_col in ((3, 11, 13), (6, 12, 14)):
            axes = F[:, ax0:ax0 + 3] * inv
            c0 = ((o[None, :] - F[:, :3]) * axes).sum(axis=1).astype(np.float32)
            ax = axes.astype(np.float32)
            x = np.take(c0, fl) + tt * (d[0] * np.take(ax[:, 0], fl) + d[1] * np.take(ax[:, 1], fl)
                                        + d[2] * np.take(ax[:, 2], fl))
            # Stay inside the face's texture, whose 1-texel guard band keeps bilinear taps on this face.
            x = np.clip(x, 0.0, np.take((F[:, size_col] - 2.0).astype(np.float32), fl))
            maps.append((x + np.take(F[:, corner_col].astype(np.float32), fl)).reshape(t.shape))
        # cv2.remap does the bilinear sampling (vectorised C++); BORDER_REPLICATE never triggers inside.
        out = cv2.remap(self._atlas, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out.astype(np.float32)

    def render(self, T_world_cam: np.ndarray, K: np.ndarray, width: int, height: int,
               supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Render (rgb uint8 [H, W, 3], depth float32 [H, W]) from camera pose T_world_cam (optical frame).

        Depth is the optical-frame z of the exact pixel-centre ray; colour averages supersample^2 rays
        per pixel on a regular sub-grid.
        """
        K = np.asarray(K, np.float64)
        T = np.asarray(T_world_cam, np.float64)
        o = T[:3, 3]
        us = np.arange(width, dtype=np.float64)
        vs = np.arange(height, dtype=np.float64)
        t, face, D = self._cast(T, K, us, vs, np.float64)
        # Scale by the optical-axis component of the ray so depth = z even for an unusual K.
        kz = np.linalg.inv(K)[2]
        depth = t * (kz[0] * us[None, :] + kz[1] * vs[:, None] + kz[2])
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)

        ss = max(int(supersample), 1)
        if ss == 1:
            rgb = self._shade(o, D, t, face)
        else:
            sub = (np.arange(ss) + 0.5) / ss - 0.5
            us_s = (us[:, None] + sub[None, :]).ravel()
            vs_s = (vs[:, None] + sub[None, :]).ravel()
            ts, fs, D = self._cast(T, K, us_s, vs_s, np.float32)
            # INTER_AREA with an integer factor is exactly the ss x ss box average, and fast.
            rgb = cv2.resize(self._shade(o, D, ts, fs), (width, height), interpolation=cv2.INTER_AREA)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8), depth

    # -- measurement ----------------------------------------------------------------------------------
    def distance_to_surface(self, points: np.ndarray) -> np.ndarray:
        """Unsigned distance [N] from world points [N, 3] to the nearest surface.

        Exact, because objects never overlap each other and lie inside the room.
        """
        pts = np.asarray(points, np.float64).reshape(-1, 3)
        d = np.abs(_box_sdf(pts, self.room))
        for box in self.objects:
            d = np.minimum(d, np.abs(_box_sdf(pts, box)))
        return d

    def _hidden_faces(self) -> np.ndarray:
        """Faces that can never be seen: bottoms of boxes on the floor, backs of shelves against a wall."""
        hidden = np.zeros(len(self._faces), bool)
        lx, ly, _ = self.params.room
        for bi, box in enumerate(self.objects, start=1):
            base = bi * _FACES_PER_BOX
            if box.center[2] - box.half[2] <= 1e-9:
                hidden[base + 4] = True
            for axis in (0, 1):
                for side in (0, 1):
                    fo = self._faces[base + axis * 2 + side]
                    centre = fo[:3] + 0.5 * fo[9] * fo[3:6] + 0.5 * fo[10] * fo[6:9]
                    if abs(abs(centre[0]) - lx / 2) < 1e-6 or abs(abs(centre[1]) - ly / 2) < 1e-6:
                        hidden[base + axis * 2 + side] = True
        return hidden

    def sample_surface(self, n: int, seed: int | None = 0, visible_only: bool = True) -> np.ndarray:
        """`n` points [n, 3] uniformly distributed (by area) on the scene surfaces.

        With `visible_only` faces that can never be seen are skipped and points covered by an object
        (floor under a box, wall behind a shelf) are rejected, so completeness is measurable.
        """
        rng = np.random.default_rng(seed)
        area = self._face_area * (~self._hidden_faces() if visible_only else 1.0)
        prob = area / area.sum()
        chunks, have = [], 0
        while have < n:
            m = int((n - have) * 1.2) + 16
            fid = rng.choice(len(prob), size=m, p=prob)
            f = self._faces[fid]
            a, b = rng.random(m), rng.random(m)
            pts = f[:, :3] + (a * f[:, 9])[:, None] * f[:, 3:6] + (b * f[:, 10])[:, None] * f[:, 6:9]
            if visible_only:
                keep = np.ones(m, bool)
                owner = fid // _FACES_PER_BOX
                for bi, box in enumerate(self.objects, start=1):
                    keep &= (owner == bi) | (_box_sdf(pts, box) > 1e-7)
                pts = pts[keep]
            chunks.append(pts)
            have += len(pts)
        return np.concatenate(chunks)[:n]
