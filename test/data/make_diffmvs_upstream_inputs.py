"""Regenerate test/data/diffmvs_upstream_inputs.npz: what cvg/diffmvs' test.py hands to its network.

Usage (einops on PYTHONPATH; upstream's network code is imported but never run)::

    python test/data/make_diffmvs_upstream_inputs.py UPSTREAM_DIR test/data/diffmvs_upstream_inputs.npz

UPSTREAM_DIR: a checkout of https://github.com/cvg/diffmvs at 451349ec5dd3b773c8b80d9fee8002eda22f4fca
with only the import-time ``torch.inverse(torch.ones((1, 1), device="cuda:0"))`` line of
``models/module.py`` commented out. For each case a synthetic scene is written in upstream's evaluation
format (``images/%08d.jpg`` written like ``colmap_input.py``, ``cams/%08d_cam.txt`` with the world-to-camera
extrinsic, intrinsic and depth range, ``pair.txt``), then upstream ``test.py`` runs with the README demo
flags per method (``--dataset=general --num_view=5``) until it calls the network: the network class is
replaced by a recorder, the CUDA transfers by no-ops, torchvision / plyfile (unused by the loader) by empty
modules. DiffMVS and CasDiffMVS flags must give identical tensors (checked); one copy is stored.
"""

import os
import runpy
import sys
import tempfile
import types
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from recon_ros.geometry.se3 import invert
from recon_ros.synthetic.sequence import SyntheticConfig, SyntheticSequence

UP = Path(sys.argv[1]).resolve()
OUT = Path(sys.argv[2])

# (name, width, height): 200x150 is resized to 192x128 (x0.96, x0.853); 166x131 would be cropped to 160x128
# by a "crop to multiples of 32" convention, upstream resizes it.
CASES = [("resize", 200, 150), ("trim", 166, 131)]
FRAMES = [0, 3, 6, 9, 12, 15]  # image ids 0..5 of camera 0 along the trajectory
PAIR_ORDER = [3, 1, 5, 4, 2]  # sources of view 0 as listed in pair.txt; 5 gets score 0.005 (<= 0.01: dropped)
SCORES = {3: 9.5, 1: 7.25, 5: 0.005, 4: 3.5, 2: 1.125}

COMMON = ["--dataset=general", "--batch_size=1", "--num_view=5", "--save_depth", "--numdepth_initial=48",
          "--numdepth=384", "--unet_dim", "0", "16", "8"]
METHOD_ARGS = {  # README demo / scripts/test flags per method
    "diffmvs": ["--method=diffmvs", "--scale", "0.0", "0.125", "0.0", "--sampling_timesteps", "0", "1", "1",
                "--ddim_eta", "0", "1", "0", "--stage_iters", "1", "4", "0", "--cost_dim_stage", "4", "4", "0",
                "--CostNum", "0", "6", "0", "--hidden_dim", "0", "32", "0", "--context_dim", "32", "32", "0",
                "--min_radius", "0.25", "--max_radius", "4"],
    "casdiffmvs": ["--method=casdiffmvs", "--scale", "0.0", "0.125", "0.025", "--sampling_timesteps", "0", "1",
                   "1", "--ddim_eta", "0", "1", "1", "--stage_iters", "1", "3", "3", "--cost_dim_stage", "4", "4",
                   "4", "--CostNum", "0", "4", "4", "--hidden_dim", "0", "32", "20", "--context_dim", "32", "32",
                   "16", "--min_radius", "0.125", "--max_radius", "8"],
}


class Recorded(Exception):
    pass


def write_scene(root: Path, width: int, height: int) -> dict:
    seq = SyntheticSequence(SyntheticConfig(seed=3, n_cameras=1, n_frames=16, width=width, height=height,
                                            hfov_deg=80.0))
    cam = seq.camera_names[0]
    (root / "images").mkdir(parents=True)
    (root / "cams").mkdir()
    K = seq.K.astype(np.float64)
    Ts, gt_depth = [], None
    for vid, fi in enumerate(FRAMES):
        frame = seq.render_frame(fi, [cam])
        rgb, depth = frame.images[cam], frame.depths[cam]
        T_world_cam = seq.T_world_cam(fi, cam)
        Ts.append(T_world_cam)
        if vid == 0:
            gt_depth = depth
        # JPEG like colmap_input.py writes (cv2.imwrite, BGR)
        cv2.imwrite(str(root / "images" / f"{vid:08d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        valid = depth[depth > 0]
        dmin, dmax = float(valid.min()) * 0.8, float(valid.max()) * 1.2
        E = invert(T_world_cam)
        with open(root / "cams" / f"{vid:08d}_cam.txt", "w") as f:
            f.write("extrinsic\n")
            for r in range(4):
                f.write(" ".join(repr(float(x)) for x in E[r]) + "\n")
            f.write("\nintrinsic\n")
            for r in range(3):
                f.write(" ".join(repr(float(x)) for x in K[r]) + "\n")
            f.write(f"\n{dmin:f} {dmax:f} \n")
    with open(root / "pair.txt", "w") as f:
        f.write(f"{len(FRAMES)}\n")
        for vid in range(len(FRAMES)):
            f.write(f"{vid}\n")
            if vid == 0:
                srcs = [(s, SCORES[s]) for s in PAIR_ORDER]
            else:
                srcs = [(s, 1.0) for s in range(len(FRAMES)) if s != vid]
            f.write(f"{len(srcs)} " + " ".join(f"{s} {sc:f}" for s, sc in srcs) + " \n")
    rgbs = np.stack([np.array(Image.open(root / "images" / f"{v:08d}.jpg")) for v in range(len(FRAMES))])
    return {"rgb": rgbs, "K": np.stack([K] * len(FRAMES)), "T_world_cam": np.stack(Ts), "gt_depth": gt_depth}


def record(scene: Path, method: str, ckpt: Path, outdir: Path) -> dict:
    sys.path.insert(0, str(UP))
    # torchvision / plyfile are imported by upstream modules the loader does not use; stub them
    for name in ("torchvision", "torchvision.utils", "torchvision.transforms", "plyfile"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["plyfile"].PlyData = sys.modules["plyfile"].PlyElement = None
    import models
    import utils

    seen: dict = {}

    class Recorder:
        def __init__(self, args, test=True):
            seen["args"] = vars(args).copy()

        def load_state_dict(self, *a, **k):
            return None

        def cuda(self):
            return self

        def eval(self):
            return self

        def __call__(self, imgs, proj_matrices, depth_values):
            seen["imgs"] = [t.clone() for t in imgs]
            seen["proj"] = {k: v.clone() for k, v in proj_matrices.items()}
            seen["depth_values"] = depth_values.clone()
            raise Recorded

    models.CasDiffMVS = Recorder
    utils.tocuda = lambda x: x
    torch.cuda.synchronize = lambda *a, **k: None
    sys.argv = ["test.py", *COMMON, *METHOD_ARGS[method], f"--testpath={scene}", f"--loadckpt={ckpt}",
                f"--outdir={outdir}"]
    cwd = Path.cwd()
    try:
        os.chdir(UP)
        runpy.run_path(str(UP / "test.py"), run_name="__main__")
    except Recorded:
        pass
    finally:
        os.chdir(cwd)
    return seen


def main() -> None:
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "empty.ckpt"
        torch.save({"model": {}}, ckpt)
        for case, w, h in CASES:
            scene = tmp / case
            data = write_scene(scene, w, h)
            rec = {m: record(scene, m, ckpt, tmp / f"out_{case}_{m}") for m in METHOD_ARGS}
            a, b = rec["diffmvs"], rec["casdiffmvs"]
            # the loader does not depend on the method: both runs must hand over identical tensors
            assert all(torch.equal(x, y) for x, y in zip(a["imgs"], b["imgs"]))
            assert all(torch.equal(a["proj"][k], b["proj"][k]) for k in a["proj"])
            assert torch.equal(a["depth_values"], b["depth_values"])
            view_ids = [0] + [s for s in PAIR_ORDER if SCORES[s] > 0.01][:4]
            out[f"{case}/view_ids"] = np.array(view_ids)
            out[f"{case}/rgb"] = data["rgb"]
            out[f"{case}/K"] = data["K"]
            out[f"{case}/T_world_cam"] = data["T_world_cam"]
            with open(scene / "cams" / "00000000_cam.txt") as f:
                rng = [float(x) for x in f.read().split("\n")[11].split()]
            out[f"{case}/depth_range"] = np.array(rng)
            out[f"{case}/imgs"] = torch.cat(a["imgs"]).numpy()  # [V,3,h,w] (batch of 1 per view)
            for k, v in a["proj"].items():
                out[f"{case}/proj_{k}"] = v.numpy()
            out[f"{case}/depth_values"] = a["depth_values"].numpy()
            print(case, w, h, "->", tuple(a["imgs"][0].shape), "views", view_ids, "range", rng)
    np.savez_compressed(OUT, **out)
    print("wrote", OUT, OUT.stat().st_size)


if __name__ == "__main__":
    main()
