"""Test configuration: hypothesis profiles (bounded & derandomized in CI, deeper on demand);
torchvision made importable before any test imports it (or timm / transformers, which do)."""

import os

import torch
from hypothesis import HealthCheck, settings

from symlab.testing._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()  # a test file run alone must not depend on which ran before

settings.register_profile(
    "ci",
    max_examples=50,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "deep", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

torch.set_num_threads(1)
