"""Shared tiny models for the ToMe tests (embed 32-64, 4 blocks, 32 px)."""
import pytest
import torch

import mergemix_mm  # noqa: F401  (registers the modules)

from tome_utils import TINY_ARCH, randomize_  # noqa: E402,F401


@pytest.fixture
def tiny_arch():
    return dict(TINY_ARCH)


@pytest.fixture
def images():
    return torch.randn(
        3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
