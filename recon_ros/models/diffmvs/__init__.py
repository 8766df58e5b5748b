"""DiffMVS / CasDiffMVS: from-scratch PyTorch port that loads the official checkpoints.

Public API:

* :class:`DiffMVSConfig`, :data:`PRESETS`, :func:`get_config` - hyper-parameters and presets.
* :class:`DiffMVSNet` - the network (``forward(imgs, proj_matrices, depth_values, noise)``).
* :func:`warp_to_reference` - plane-sweep homography warping of a source feature map / image.
* :func:`load_diffmvs` - strict, safe checkpoint loading.
* :class:`DiffMVSPredictor`, :class:`DepthPrediction`, :func:`photometric_mask` - engine-facing API.
* :func:`run_fixture` - run the upstream-parity fixtures.
"""

from .checkpoint import load_diffmvs
from .config import PRESETS, DiffMVSConfig, get_config
from .fixture_run import run_fixture
from .geometry import warp_to_reference
from .model import DiffMVSNet
from .predictor import DepthPrediction, DiffMVSPredictor, photometric_mask

__all__ = [
    "PRESETS",
    "DepthPrediction",
    "DiffMVSConfig",
    "DiffMVSNet",
    "DiffMVSPredictor",
    "get_config",
    "load_diffmvs",
    "photometric_mask",
    "run_fixture",
    "warp_to_reference",
]
