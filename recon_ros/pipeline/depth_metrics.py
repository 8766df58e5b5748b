"""Accuracy of *published* depth images against ground truth: AbsRel, delta, coverage, sparsification.

What a robot consumes is the ``32FC1`` image on ``/recon/depth/<cam>/image`` (NaN = no depth), not
the fused cloud, so these metrics score every published pixel that has ground truth. The
confidence image is scored by its sparsification curve: the AbsRel of the most-confident x % of
published pixels; the oracle curve orders pixels by their true error, and AUSE is the area between
the two (0 = the confidence orders pixels exactly as their error does).
"""

from __future__ import annotations

import numpy as np

SPARSIFICATION_FRACTIONS = tuple(round(0.1 * k, 1) for k in range(1, 11))


def depth_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """AbsRel, delta<1.25 and the fraction of pixels more than 10 % off (1-D arrays of matched pixels)."""
    if len(pred) == 0:
        return {"absrel": float("nan"), "delta_1_25": float("nan"), "outliers_10pct": float("nan")}
    rel = np.abs(pred - gt) / gt
    ratio = np.maximum(pred / gt, gt / pred)
    return {"absrel": float(np.mean(rel)), "delta_1_25": float(np.mean(ratio < 1.25)),
            "outliers_10pct": float(np.mean(rel > 0.10))}


def sparsification(rel_error: np.ndarray, confidence: np.ndarray,
                   fractions: tuple[float, ...] = SPARSIFICATION_FRACTIONS) -> dict:
    """AbsRel of the most-confident ``x`` of the pixels for each ``x`` in ``fractions``, the oracle's, and AUSE."""
    n = len(rel_error)
    if n == 0:
        return {"fractions": list(fractions), "absrel": [], "oracle": [], "ause": float("nan")}
    # Stable sort on -confidence: ties keep pixel order, so a constant confidence is no better than chance.
    by_conf = rel_error[np.argsort(-confidence, kind="stable")]
    by_err = np.sort(rel_error)
    csum_conf, csum_err = np.cumsum(by_conf), np.cumsum(by_err)
    curve, oracle = [], []
    for f in fractions:
        k = max(1, int(round(f * n)))
        curve.append(float(csum_conf[k - 1] / k))
        oracle.append(float(csum_err[k - 1] / k))
    # Trapezoid over the fractions: the area between the curves, in AbsRel units.
    gap = np.asarray(curve) - np.asarray(oracle)
    x = np.asarray(fractions)
    ause = float(np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(x))) if len(x) > 1 else float(gap[0])
    return {"fractions": list(fractions), "absrel": curve, "oracle": oracle, "ause": ause}


class PublishedDepthScore:
    """Accumulates published depth images against ground truth, per camera and overall."""

    def __init__(self) -> None:
        self._rel: dict[str, list[np.ndarray]] = {}
        self._ratio: dict[str, list[np.ndarray]] = {}
        self._conf: dict[str, list[np.ndarray]] = {}
        self._gt_pixels: dict[str, int] = {}
        self._images: dict[str, int] = {}

    def add(self, camera: str, depth: np.ndarray, confidence: np.ndarray, gt: np.ndarray) -> None:
        """One published image (NaN = not published) and its ground truth (0 or NaN = none)."""
        if depth.shape != gt.shape:
            raise ValueError(f"published depth of {camera} is {depth.shape}, ground truth {gt.shape}")
        has_gt = np.isfinite(gt) & (gt > 0)
        pub = has_gt & np.isfinite(depth) & (depth > 0)
        d, g = depth[pub].astype(np.float64), gt[pub].astype(np.float64)
        self._rel.setdefault(camera, []).append(np.abs(d - g) / g)
        self._ratio.setdefault(camera, []).append(np.maximum(d / g, g / d))
        self._conf.setdefault(camera, []).append(confidence[pub].astype(np.float64))
        self._gt_pixels[camera] = self._gt_pixels.get(camera, 0) + int(has_gt.sum())
        self._images[camera] = self._images.get(camera, 0) + 1

    def _summary(self, cams: list[str]) -> dict:
        rel = np.concatenate([a for c in cams for a in self._rel[c]])
        ratio = np.concatenate([a for c in cams for a in self._ratio[c]])
        conf = np.concatenate([a for c in cams for a in self._conf[c]])
        gt_pixels = sum(self._gt_pixels[c] for c in cams)
        sp = sparsification(rel, conf)
        half = sparsification(rel, conf, (0.5, 1.0))["absrel"] if len(rel) else [float("nan")] * 2
        return {
            "images": sum(self._images[c] for c in cams),
            "absrel": float(rel.mean()) if len(rel) else float("nan"),
            "median_rel": float(np.median(rel)) if len(rel) else float("nan"),
            "delta_1_25": float(np.mean(ratio < 1.25)) if len(rel) else float("nan"),
            "outliers_10pct": float(np.mean(rel > 0.10)) if len(rel) else float("nan"),
            "coverage": len(rel) / gt_pixels if gt_pixels else 0.0,
            "absrel_top50_confidence": half[0],
            "ause": sp["ause"],
            "sparsification": {"fractions": sp["fractions"], "absrel": sp["absrel"], "oracle": sp["oracle"]},
        }

    def report(self) -> dict:
        cams = sorted(self._rel)
        if not cams:
            return {"per_camera": {}, "all": {}}
        return {"per_camera": {c: self._summary([c]) for c in cams}, "all": self._summary(cams)}


class PublishedDepthSummary:
    """The bag tool's view of published depth: per camera, the fraction of pixels published and,
    where the bag carries ground-truth depth for the same stamp, ``PublishedDepthScore``'s figures."""

    def __init__(self, max_pending_ground_truth: int = 64) -> None:
        self.score = PublishedDepthScore()
        self._published: dict[str, list[float]] = {}
        self._gt: dict[tuple[str, int], np.ndarray] = {}
        self._max_pending = max_pending_ground_truth

    def add_ground_truth(self, camera: str, stamp_ns: int, depth: np.ndarray) -> None:
        self._gt[(camera, stamp_ns)] = depth
        while len(self._gt) > self._max_pending:  # bounded: the oldest unmatched ground truth goes
            self._gt.pop(next(iter(self._gt)))

    def add_published(self, camera: str, stamp_ns: int, depth: np.ndarray, confidence: np.ndarray) -> None:
        self._published.setdefault(camera, []).append(float(np.mean(np.isfinite(depth))))
        gt = self._gt.pop((camera, stamp_ns), None)
        if gt is None:
            return
        if gt.shape != depth.shape:  # depth computed at depth.width: compare at that resolution
            import cv2

            gt = cv2.resize(gt, (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_NEAREST)
        self.score.add(camera, depth, confidence, gt)

    def report(self) -> dict:
        out: dict = {"per_camera": {c: {"images": len(f), "published_fraction": float(np.mean(f))}
                                    for c, f in sorted(self._published.items())}}
        scored = self.score.report()
        for cam, m in scored["per_camera"].items():
            out["per_camera"][cam].update({k: v for k, v in m.items() if k != "sparsification"})
        if scored["all"]:
            out["all"] = scored["all"]
        return out
