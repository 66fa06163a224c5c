"""Every config under configs/ parses, names registered modules, and builds
its model (datasets are checked for a registered type and a buildable
pipeline; they are not loaded)."""
import ast
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS, MODELS

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)


def test_configs_found():
    assert len(CONFIGS) >= 40


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_config_builds(path):
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(path)
    assert cfg.get('custom_imports', {}).get('imports') == ['mergemix_mm']
    assert cfg.default_scope == 'mmpretrain'
    seed = cfg.get('randomness', {}).get('seed')
    assert seed is not None, 'every config fixes its seed'
    head = cfg.model.get('head', {})
    if cfg.model.get('train_cfg', {}).get('augments'):
        assert head.get('cal_acc', False) is False, 'cal_acc with mixed labels'
    for split in ('train_dataloader', 'val_dataloader'):
        ds = cfg[split]['dataset']
        assert DATASETS.get(ds['type']) is not None, ds['type']
        Compose(ds.get('pipeline', []))
    preprocessor = cfg.model.get('data_preprocessor') or cfg.get(
        'data_preprocessor', {})
    if head.get('num_classes') and preprocessor.get('num_classes'):
        assert head.num_classes == preprocessor.num_classes, (
            'the head and the data preprocessor (the dataset) disagree on '
            'the number of classes')
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    with torch.device('meta') if 'large' in path else _null():
        model = MODELS.build(model_cfg)
    assert model is not None


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


ALL_CONFIG_FILES = sorted(
    glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True))


@pytest.mark.parametrize(
    'path',
    ALL_CONFIG_FILES,
    ids=[osp.relpath(p, ROOT) for p in ALL_CONFIG_FILES])
def test_no_top_level_name_is_assigned_twice(path):
    """A second ``model = dict(...)`` in one file replaces the first before
    mmengine merges the file with its bases, so the first is silently lost
    (it once cost 20 configs their ``num_classes``)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    seen = set()
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = (node.targets
                       if isinstance(node, ast.Assign) else [node.target])
            for target in targets:
                if isinstance(target, ast.Name):
                    assert target.id not in seen, (
                        f'{target.id} is assigned twice; merge the dicts')
                    seen.add(target.id)


_STATED = re.compile(r'# (\d+) GPU\(s\) x (\d+) images per GPU, (\d+) '
                     r'epochs, lr ([0-9.e+-]+) ')
STATED_CONFIGS = [
    p for p in CONFIGS
    if _STATED.search(open(p).read())
]


def test_stated_recipes_found():
    assert len(STATED_CONFIGS) >= 40


@pytest.mark.parametrize(
    'path', STATED_CONFIGS, ids=[osp.relpath(p, ROOT) for p in STATED_CONFIGS])
def test_stated_recipe_matches_resolved_config(path):
    """The recipe line a leaf config states (GPUs x batch, epochs, lr) is
    what the resolved config trains with."""
    gpus, batch, epochs, lr = _STATED.search(open(path).read()).groups()
    cfg = Config.fromfile(path)
    assert cfg.train_dataloader.batch_size == int(batch)
    assert cfg.train_cfg.max_epochs == int(epochs)
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(float(lr))
    scale = cfg.get('auto_scale_lr', {})
    if scale.get('base_batch_size'):
        assert scale.base_batch_size == int(gpus) * int(batch)
