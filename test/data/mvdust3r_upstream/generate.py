"""Generate ``nonsquare.npz`` and ``preprocess_fov.npz`` with upstream MV-DUSt3R (not run by the tests).

    .venv/bin/python test/data/mvdust3r_upstream/generate.py /path/to/mvdust3r test/data/mvdust3r_upstream \
        [--preprocess-only]

Upstream: facebookresearch/mvdust3r at commit 18872ead676beac7af4a919fd7e02f5d1673c2b5, imported with
``benchmarks/upstream_mvdust3r.py`` (placeholders for training-only packages), CPU, one thread, float32,
PyTorch RoPE fallback. Weights: the shared parity fixtures' reduced ``MVD/weights.pt`` and
``MVDp/weights.pt`` (loaded strictly into upstream's class built from the manifests' reduced config).

nonsquare.npz (network parity at a size that is not square):
  ``img_uint8 [4, H, W, 3]``: the shared MVD fixture's four input views, rows 32..191 (H x W = 160 x 224);
  ``{mvd,mvdp}_pts3d_sub [P, 4, ceil(H/5), ceil(W/5), 3]``, ``{mvd,mvdp}_conf_sub``: upstream outputs at
  pixels ``[::5, ::5]`` (5 is coprime with the 16-px patch, so every in-patch offset occurs), slots as in
  the shared fixtures' outputs.npz;
  ``mvd_portrait_pts3d_sub``, ``mvd_portrait_conf_sub``: MVD on the transposed views (224 x 160, portrait),
  as upstream returns them: its head wrapper transposes portrait results to landscape, so these are
  ``[1, 4, W/5.., H/5.., ...]`` with image row/column swapped.
preprocess_fov.npz (image loading of 4:3 / 16:9 camera images):
  ``raw_i``: synthetic RGB images; ``square_i``: upstream ``load_images(size=224)`` (the demo);
  ``fov_i``: upstream's long-side loader branch with the long side 224 (``_resize_pil_image`` to 224 and
  its centred crop to multiples of 16, as ``load_images`` does for sizes other than 224).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image
import torch

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))
from upstream_mvdust3r import import_upstream  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures" / "mvdust3r"


def run_upstream(up, model: str, img: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    manifest = json.loads((FIXTURES / model / "manifest.json").read_text())
    cfg = dict(manifest["reduced_config"])
    for key in ("depth_mode", "conf_mode"):
        cfg[key] = (cfg[key][0], *(float(v) for v in cfg[key][1:]))
    cfg["img_size"] = tuple(cfg["img_size"])
    net = up.model.AsymmetricCroCo3DStereoMultiView(**cfg).eval()
    net.load_state_dict(torch.load(FIXTURES / model / "weights.pt", weights_only=True), strict=True)
    v, _, h, w = img.shape
    shape = torch.tensor([[h, w]], dtype=torch.int32)
    views = [{"img": img[i : i + 1], "true_shape": shape} for i in range(v)]
    with torch.no_grad():
        res1, res2s = net(views[0], views[1:])
    p = net.n_ref if getattr(net, "m_ref_flag", False) else 1
    pts = torch.stack([res1["pts3d"]] + [r["pts3d_in_other_view"] for r in res2s], dim=1)  # [P, V, H, W, 3]
    conf = torch.stack([res1["conf"]] + [r["conf"] for r in res2s], dim=1)
    assert pts.shape[0] == p
    return pts.numpy(), conf.numpy()


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """Upstream's normalised ``[3, H, W]`` image back to uint8 ``[H, W, 3]`` (exact: u8 = (x*0.5+0.5)*255)."""
    u8 = np.rint((img.numpy() * 0.5 + 0.5) * 255.0)
    assert np.abs((u8 / 255.0 - 0.5) / 0.5 - img.numpy()).max() < 1e-6
    return u8.astype(np.uint8).transpose(1, 2, 0)


def main() -> None:
    torch.set_num_threads(1)
    up = import_upstream(sys.argv[1])
    out_dir = Path(sys.argv[2])
    if "--preprocess-only" not in sys.argv:
        make_nonsquare(up, out_dir)
    make_preprocess(up, out_dir)


def make_nonsquare(up, out_dir: Path) -> None:
    base = np.load(FIXTURES / "MVD" / "inputs.npz")["img_uint8"]  # [4, 224, 224, 3]
    u8 = np.ascontiguousarray(base[:, 32:192])
    img = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    arrays: dict[str, np.ndarray] = {"img_uint8": u8}
    for model in ("MVD", "MVDp"):
        pts, conf = run_upstream(up, model, img)
        arrays[f"{model.lower()}_pts3d_sub"] = pts[:, :, ::5, ::5].astype(np.float32)
        arrays[f"{model.lower()}_conf_sub"] = conf[:, :, ::5, ::5].astype(np.float32)
        print(model, "done", flush=True)
    pts, conf = run_upstream(up, "MVD", img.transpose(-1, -2).contiguous())
    arrays["mvd_portrait_pts3d_sub"] = pts[:, :, ::5, ::5].astype(np.float32)
    arrays["mvd_portrait_conf_sub"] = conf[:, :, ::5, ::5].astype(np.float32)
    print("portrait", pts.shape, flush=True)
    np.savez_compressed(out_dir / "nonsquare.npz", **arrays)


def make_preprocess(up, out_dir: Path) -> None:
    rng = np.random.default_rng(7)
    pre: dict[str, np.ndarray] = {}
    sizes = [(480, 640), (240, 320), (144, 256), (300, 400), (180, 320)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (h, w) in enumerate(sizes):
            small = rng.integers(0, 256, size=(h // 40 + 2, w // 40 + 2, 3), dtype=np.uint8)
            raw = np.asarray(PIL.Image.fromarray(small).resize((w, h), PIL.Image.BICUBIC))
            path = str(Path(tmp) / f"raw_{i}.png")
            PIL.Image.fromarray(raw).save(path)
            pre[f"raw_{i}"] = raw
            sq = up.image.load_images([path, path], size=224, verbose=False)[0]
            pre[f"square_{i}"] = to_uint8(sq["img"][0])
            pil = PIL.Image.open(path).convert("RGB")
            pil = up.image._resize_pil_image(pil, 224)
            wd, ht = pil.size
            cx, cy = wd // 2, ht // 2
            halfw, halfh = ((2 * cx) // 16) * 8, ((2 * cy) // 16) * 8
            pil = pil.crop((cx - halfw, cy - halfh, cx + halfw, cy + halfh))
            pre[f"fov_{i}"] = to_uint8(up.image.ImgNorm(pil))
            print(i, raw.shape, pre[f"square_{i}"].shape, pre[f"fov_{i}"].shape, flush=True)
    np.savez_compressed(out_dir / "preprocess_fov.npz", **pre)


if __name__ == "__main__":
    main()
