"""Shared fixtures: a tiny digits ViT config, a random checkpoint of it and
the analysis tools loaded as modules (run in-process, no subprocess)."""

import pytest
import torch

from analysis_utils import (DEMO, MERGEMIX, ROOT, TINY,  # noqa: F401
                            assert_png, load_tool,
                            write_tiny_config)


@pytest.fixture(scope='session')
def tiny_config(tmp_path_factory):
    return write_tiny_config(tmp_path_factory.mktemp('cfg'))


@pytest.fixture(scope='session')
def tiny_checkpoint(tiny_config, tmp_path_factory):
    """A randomly initialised checkpoint of the tiny config (mmengine
    format), saved with a fixed seed."""
    from mmengine.runner import save_checkpoint

    from mergemix_mm.analysis import build_model, load_config
    torch.manual_seed(0)
    model = build_model(load_config(tiny_config))
    path = str(tmp_path_factory.mktemp('ckpt') / 'random.pth')
    save_checkpoint(dict(meta=dict(epoch=0), state_dict=model.state_dict()),
                    path)
    return path
