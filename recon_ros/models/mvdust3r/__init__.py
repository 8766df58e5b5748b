"""MV-DUSt3R and MV-DUSt3R+ (CVPR 2025): multi-view pointmap regression, own PyTorch implementation.

Loads the official checkpoints (``MVD.pth``, ``MVDp_s1.pth``, ``MVDp_s2.pth``; CC BY-NC 4.0 weights).
"""

from .checkpoint import load_mvdust3r
from .config import PRESETS, MVDust3RConfig, from_manifest, preset
from .network import MVDust3R, slot_to_view
from .predictor import MVDust3RPredictor, PointmapPrediction
from .preprocess import preprocess_views, reference_order
from .token_cache import EncoderTokenCache

__all__ = [
    "PRESETS",
    "EncoderTokenCache",
    "MVDust3R",
    "MVDust3RConfig",
    "MVDust3RPredictor",
    "PointmapPrediction",
    "from_manifest",
    "load_mvdust3r",
    "preprocess_views",
    "preset",
    "reference_order",
    "slot_to_view",
]
