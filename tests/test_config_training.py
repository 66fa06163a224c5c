"""Every config trains: real optimizer steps and a validation pass.

``tests/test_configs.py`` only builds each config's model. Here each config
runs through mmengine's ``Runner`` on a tiny copy of its dataset, fabricated
in the official archive format by the factories of
``tests/test_datasets/dataset_archives.py`` and prepared by the matching
``tools/dataset_converters/prepare_*.py`` (the layout the configs read).

The run is the config itself with only these changes (on a copy; the loaded
config is never modified): batch size 2 (the smallest batch every augment
mixes), ``num_workers=0``, 2 training iterations (one epoch of 4 images),
validation on 4 images after them, no checkpoints, and, on a machine without
CUDA, ``OptimWrapper`` in place of ``AmpOptimWrapper`` (mmengine's AMP
wrapper asserts a GPU at construction). After the run a batch of one is
checked to pass the batch augments unmixed and to train one more step.

The default run trains one representative config per (dataset family,
backbone implementation); ``pytest -m slow`` trains all of them.
"""
import copy
import gc
import glob
import math
import os.path as osp
import sys
import uuid
from typing import Dict, Optional

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.runner import Runner

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
_ARCHIVES = osp.join(ROOT, 'tests', 'test_datasets')
if _ARCHIVES not in sys.path:
    sys.path.insert(0, _ARCHIVES)

from dataset_archives import (aircraft_tgz, cars_files,  # noqa: E402
                              cifar100_tarball, cub_tgz, imagenet_archives,
                              load_tool, tiny_zip)

CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                       recursive=True) if '_base_' not in p)

#: Dataset type of a config -> dataset family.
FAMILIES = {
    'CIFAR100Local': 'cifar100',
    'ImageNetLocal': 'imagenet',
    'CUBLocal': 'cub',
    'StanfordCarsLocal': 'stanford_cars',
    'FGVCAircraftLocal': 'aircraft',
    'DigitsDataset': 'digits',
    'TinyImageNet': 'tiny_imagenet',
}

#: One config per (dataset family, backbone type), trained by default. The
#: picks also cover the ViT-S, ViT-B, DeiT-S and both digits models (DeiT-T
#: and ViT-L, ~25 s and ~5 GB on a CPU, only with ``-m slow``), and spread
#: the augments over MergeMix, TransMix (classifier re-scoring) and
#: mmpretrain's Mixup / CutMix, AMP (the ImageNet recipe) included.
REPRESENTATIVES = {
    ('cifar100', 'ToMeVisionTransformer'):
    'configs/mergemix/vit-small-p16_1xb100-mergemix-200e_cifar100-224px.py',
    ('cifar100', 'ToMeTimmViT'):
    'configs/mergemix/timm-deit-small-p16_1xb100-mergemix-200e_'
    'cifar100-224px.py',
    ('imagenet', 'ToMeVisionTransformer'):
    'configs/mergemix/deit-small-p16_4xb256-mixup-cutmix-300e_in1k.py',
    ('cub', 'ToMeVisionTransformer'):
    'configs/mergemix/vit-base-p16_1xb16-mergemix-200e_cub.py',
    ('stanford_cars', 'ToMeVisionTransformer'):
    'configs/mergemix/deit-small-p16_1xb16-cutmix-200e_stanfordcars.py',
    ('aircraft', 'ToMeVisionTransformer'):
    'configs/mergemix/deit-small-p16_1xb16-mixup-200e_aircraft.py',
    ('digits', 'VisionTransformer'):
    'configs/baselines/digits/vit-tiny_1xb64-transmix_digits-32px.py',
    ('digits', 'ToMeTimmViT'):
    'configs/demo/timm-vit-tiny_1xb64-mergemix_digits-32px.py',
}

#: mmpretrain's own augments that do not pass a batch of one through
#: unmixed (docs/reliability.md, "Bad-input matrix"; xfail in
#: tests/test_reliability/test_bad_input_matrix.py): ResizeMix pastes a
#: resized copy of the image into itself. The label stays the image's own.
UPSTREAM_SELF_MIX = ('mmpretrain.models.utils.batch_augments.resizemix.'
                     'ResizeMix', )

BATCH_SIZE = 2
ITERS = 2
VAL_IMAGES = 4


def family_of(cfg: Config) -> str:
    """The dataset family a config trains on (a key of the fixtures)."""
    return FAMILIES[cfg.train_dataloader.dataset.type]


def _prepare(family: str, request, out: str) -> None:
    """Fabricate the official archive(s) of ``family`` and run its converter
    into ``out``."""
    if family == 'cifar100':
        archive, _ = request.getfixturevalue(cifar100_tarball.name)()
        problems = load_tool('prepare_cifar100').prepare_cifar100(
            out, archive=archive)
    elif family == 'imagenet':
        arch = request.getfixturevalue(imagenet_archives.name)()
        problems = load_tool('prepare_imagenet').prepare_imagenet(
            out, train_tar=arch['train_tar'], val_tar=arch['val_tar'],
            devkit=arch['devkit'], mode='copy')
    elif family == 'cub':
        archive, _ = request.getfixturevalue(cub_tgz.name)()
        problems = load_tool('prepare_cub').prepare_cub(out, archive=archive)
    elif family == 'stanford_cars':
        files = request.getfixturevalue(cars_files.name)()['files']
        problems = load_tool('prepare_stanford_cars').prepare_stanford_cars(
            out, [files[k] for k in ('cars_train.tgz', 'cars_test.tgz',
                                     'car_devkit.tgz',
                                     'cars_test_annos_withlabels.mat')])
    elif family == 'aircraft':
        archive, _ = request.getfixturevalue(aircraft_tgz.name)()
        problems = load_tool('prepare_aircraft').prepare_aircraft(
            out, archive=archive)
    elif family == 'tiny_imagenet':
        archive, _, _ = request.getfixturevalue(tiny_zip.name)()
        problems = load_tool('prepare_tiny_imagenet').prepare_tiny_imagenet(
            out, archive=archive)
    else:
        raise KeyError(family)
    assert problems == [], problems


@pytest.fixture(scope='session')
def _prepared_roots() -> Dict[str, str]:
    """Prepared dataset folders, one per family, shared by the session."""
    return {}


@pytest.fixture
def data_root(request, tmp_path_factory, _prepared_roots):
    """``data_root(family)`` -> the prepared tiny copy of that dataset.

    The first request of a family writes its archives with the factory
    fixture and prepares them once for the session; ``digits`` ships with
    scikit-learn and has no root (None).
    """

    def get(family: str) -> Optional[str]:
        if family == 'digits':
            return None
        if family not in _prepared_roots:
            out = str(tmp_path_factory.mktemp('prepared') / family)
            _prepare(family, request, out)
            _prepared_roots[family] = out
        return _prepared_roots[family]

    return get


def training_config(cfg: Config, data_root: Optional[str], work_dir: str,
                    batch_size: int = BATCH_SIZE, iters: int = ITERS,
                    val_images: int = VAL_IMAGES) -> Config:
    """A copy of ``cfg`` that trains ``iters`` steps and validates once.

    Args:
        cfg (Config): A loaded config; it is not modified.
        data_root (str, optional): The prepared dataset folder; None keeps
            the config's (datasets without a root).
        work_dir (str): The run's work directory.
        batch_size (int): Training and validation batch size. Defaults to 2.
        iters (int): Training iterations (one epoch). Defaults to 2.
        val_images (int): Images in the validation pass. Defaults to 4.

    Returns:
        Config: The changed copy.
    """
    cfg = copy.deepcopy(cfg)
    for key, size in (('train_dataloader', iters * batch_size),
                      ('val_dataloader', val_images)):
        loader = cfg[key]
        loader.update(batch_size=batch_size, num_workers=0,
                      persistent_workers=False)
        if data_root is not None:
            loader.dataset.data_root = data_root
        loader.dataset.indices = size
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    if (cfg.optim_wrapper.get('type') == 'AmpOptimWrapper'
            and not torch.cuda.is_available()):
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)
        cfg.optim_wrapper.pop('dtype', None)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'train_{uuid.uuid4().hex}'
    cfg.log_level = 'WARNING'
    cfg.launcher = 'none'
    return cfg


class RecordHook(Hook):
    """Keeps the training losses and the validation metrics of a run."""

    def __init__(self):
        self.losses = []
        self.metrics = None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append(float(outputs['loss'].detach()))

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = dict(metrics or {})


def _labels(dataset) -> set:
    return {int(dataset.get_data_info(i)['gt_label'])
            for i in range(len(dataset))}


def _qualname(obj) -> str:
    return f'{type(obj).__module__}.{type(obj).__qualname__}'


def check_batch_of_one(runner: Runner) -> Optional[str]:
    """Check that a batch of one image passes the batch augments unmixed.

    Compares the data preprocessor's training output with its test output
    (images, and the one-hot scores), then trains one step on the batch.

    Args:
        runner (Runner): A runner after ``train()``.

    Returns:
        str | None: Why the images were changed by a known upstream augment
        (:data:`UPSTREAM_SELF_MIX`), else None.
    """
    model = runner.model
    batch = pseudo_collate([runner.train_dataloader.dataset[0]])
    mixed = model.data_preprocessor(copy.deepcopy(batch), training=True)
    plain = model.data_preprocessor(copy.deepcopy(batch), training=False)
    if 'gt_score' in plain['data_samples'][0]:
        # mmpretrain's RandomBatchAugment returns float scores
        torch.testing.assert_close(mixed['data_samples'][0].gt_score,
                                   plain['data_samples'][0].gt_score,
                                   check_dtype=False)
    known = None
    augments = getattr(model.data_preprocessor.batch_augments, 'augments',
                       [])
    upstream = [_qualname(a) for a in augments
                if _qualname(a) in UPSTREAM_SELF_MIX]
    try:
        torch.testing.assert_close(mixed['inputs'], plain['inputs'])
    except AssertionError:
        if not upstream:
            raise
        known = (f'{upstream[0]} changes a batch of one (mixes it with '
                 'itself; upstream, docs/reliability.md)')
    losses = model.train_step(copy.deepcopy(batch), runner.optim_wrapper)
    assert math.isfinite(float(losses['loss'].detach()))
    return known


def train_config(path: str, data_root, tmp_path) -> None:
    """Train the config at ``path`` (relative to the repository) as the
    module docstring says and check the run."""
    cfg = Config.fromfile(osp.join(ROOT, path))
    family = family_of(cfg)
    run_cfg = training_config(cfg, data_root(family), str(tmp_path / 'work'))
    runner = Runner.from_cfg(run_cfg)
    record = RecordHook()
    runner.register_hook(record, priority='LOWEST')
    try:
        runner.train()
        assert runner.iter == ITERS
        assert len(record.losses) == ITERS
        assert all(math.isfinite(v) for v in record.losses), record.losses
        assert record.metrics is not None, 'no validation ran'
        top1 = record.metrics.get('accuracy/top1')
        assert top1 is not None and 0 <= top1 <= 100, record.metrics

        # The head, the data preprocessor and the dataset's classes agree,
        # and every label of the fabricated data is a valid class.
        head = runner.model.head
        if family != 'tiny_imagenet':  # its classes come from the data
            classes = type(
                runner.train_dataloader.dataset).METAINFO['classes']
            assert head.num_classes == len(classes)
        assert head.num_classes == cfg.data_preprocessor.num_classes
        if family not in ('imagenet', 'tiny_imagenet'):  # 3-class fakes
            assert len(runner.train_dataloader.dataset.metainfo[
                'classes']) == head.num_classes
        for loader in (runner.train_dataloader, runner.val_dataloader):
            assert max(_labels(loader.dataset)) < head.num_classes

        known = check_batch_of_one(runner)
    finally:
        del runner
        gc.collect()
    if known:
        pytest.xfail(known)


@pytest.mark.parametrize('path', sorted(REPRESENTATIVES.values()))
def test_representative_config_trains(path, data_root, tmp_path):
    train_config(path, data_root, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS)
def test_config_trains(path, data_root, tmp_path):
    train_config(path, data_root, tmp_path)


def test_tiny_imagenet_base_composes_and_trains(data_root, tmp_path):
    """No shipped config uses the Tiny-ImageNet base; a user's config that
    puts it under a model, schedule and runtime base (as the docs say)
    trains MergeMix at 64 px."""
    bases = [osp.join(ROOT, 'configs', '_base_', p) for p in (
        'models/deit-tiny-p16_mergemix.py',
        'datasets/tiny_imagenet_bs100_64px.py',
        'schedules/cifar100_adamw_200e.py', 'default_runtime.py')]
    path = tmp_path / 'deit-tiny-p8_1xb100-mergemix_tiny-imagenet-64px.py'
    path.write_text(
        f'_base_ = {bases!r}\n'
        "model = dict(backbone=dict(img_size=64, patch_size=8),\n"
        "             head=dict(num_classes=200),\n"
        "             train_cfg=dict(augments=[dict(type='MergeMix',\n"
        "                                           alpha=1.0)]))\n")
    assert family_of(Config.fromfile(str(path))) == 'tiny_imagenet'
    train_config(str(path), data_root, tmp_path)


def test_representatives_cover_every_family_pair():
    """Each (dataset family, backbone type) of the configs has exactly one
    default representative, which trains on that pair."""
    pairs = {}
    for path in CONFIGS:
        cfg = Config.fromfile(osp.join(ROOT, path))
        pairs.setdefault((family_of(cfg), cfg.model.backbone.type),
                         []).append(path)
    assert set(pairs) == set(REPRESENTATIVES)
    for pair, path in REPRESENTATIVES.items():
        assert path in pairs[pair], (pair, path)
