"""Full float32 on the GPU for the feature maths.

cuDNN convolutions default to TF32 (10-bit mantissas) on Ampere and later GPUs. torchaudio's
resampler is a convolution, and under TF32 its output differed from a float64 resample by up
to 0.15 in log-mel on an H200. The choice of algorithm, and with it the error, depended on the
batch's shape.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def ieee_float32():
    """Within it (or a function it decorates): IEEE float32 convolutions and matrix products."""
    settings = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    saved = [setting.fp32_precision for setting in settings]
    for setting in settings:
        setting.fp32_precision = "ieee"
    try:
        yield
    finally:
        for setting, value in zip(settings, saved):
            setting.fp32_precision = value
