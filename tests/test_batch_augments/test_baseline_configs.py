"""Every baseline config parses, builds its augments through the registry,
trains with its MergeMix-comparison recipe, is what
``tools/misc/make_baseline_configs.py`` writes, and (digits variants) trains
one step."""
import copy
import glob
import importlib.util
import os.path as osp
import re
import shutil
from functools import lru_cache

import pytest
import torch
from baseline_utils import seed_all
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmpretrain.registry import BATCH_AUGMENTS, MODELS
from mmpretrain.structures import DataSample

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', 'baselines', '**', '*.py'),
              recursive=True))
DIGITS = [c for c in CONFIGS if '_digits-' in c]
GENERATED = [c for c in CONFIGS if c not in DIGITS]
# Trained for one step by default (the classifier re-scoring paths and a
# label-aware mask); the other digits variants run with ``-m slow``.
FAST = ('-transmix_', '-mixpro_', '-mixpro-openmixup_', '-tdattenmix_')
DIGITS_PARAMS = [
    pytest.param(c, marks=() if any(k in c for k in FAST) else
                 pytest.mark.slow) for c in DIGITS
]
METHODS = {
    'vanilla', 'mixup', 'cutmix', 'deit', 'fmix', 'gridmix', 'smoothmix',
    'resizemix', 'resizemix-mmpretrain', 'saliencymix', 'attentivecutmix',
    'transmix', 'smmix', 'mixpro', 'mixpro-openmixup', 'tdattenmix',
    'tokenmix'
}
#: The matrix every method has, as (folder, model, GPUs x batch and a
#: schedule tag, data) ->
#: (the MergeMix-comparison config whose recipe it copies, model base
#: replacing that config's, if any). Written out here, not read from the
#: generator, so a recipe dropped there fails here.
VARIANTS = {
    ('cifar100', 'deit-tiny', '1xb100', 'cifar100-224px'):
    ('deit-tiny-p16_1xb100-mixup-200e_cifar100-224px.py', None),
    ('cifar100', 'deit-small', '1xb100', 'cifar100-224px'):
    ('deit-small-p16_1xb100-mixup-200e_cifar100-224px.py', None),
    ('cifar100', 'vit-small', '1xb100', 'cifar100-224px'):
    ('vit-small-p16_1xb100-mixup-200e_cifar100-224px.py', None),
    ('cifar100', 'vit-base', '4xb25', 'cifar100-224px'):
    ('vit-base-p16_4xb25-mixup-200e_cifar100-224px.py', None),
    ('cifar100', 'vit-large', '2xb50', 'cifar100-224px'):
    ('vit-large-p16_2xb50-mixup-200e_cifar100-224px.py', None),
    ('cifar100', 'deit-tiny', '1xb100-600e', 'cifar100-224px'):
    ('deit-tiny-p16_1xb100-mixup-600e_cifar100-224px.py', None),
    ('cifar100', 'deit-small', '1xb100-600e', 'cifar100-224px'):
    ('deit-small-p16_1xb100-mixup-600e_cifar100-224px.py', None),
    ('cifar100', 'vit-small', '1xb100-600e', 'cifar100-224px'):
    ('vit-small-p16_1xb100-mixup-600e_cifar100-224px.py', None),
    ('cifar100', 'vit-base', '1xb100-600e', 'cifar100-224px'):
    ('vit-base-p16_1xb100-mixup-600e_cifar100-224px.py', None),
    ('imagenet', 'deit-small', '4xb256', 'in1k'):
    ('deit-small-p16_4xb256-mixup-300e_in1k.py', None),
    ('imagenet', 'deit-tiny', '4xb256', 'in1k'):
    ('deit-small-p16_4xb256-mixup-300e_in1k.py', 'deit-tiny-p16_mergemix.py'),
    ('cub', 'deit-small', '1xb16', 'cub'):
    ('deit-small-p16_1xb16-mixup-200e_cub.py', None),
    ('cub', 'vit-base', '1xb16', 'cub'):
    ('vit-base-p16_1xb16-mixup-200e_cub.py', None),
    ('aircraft', 'deit-small', '1xb16', 'aircraft'):
    ('deit-small-p16_1xb16-mixup-200e_aircraft.py', None),
    ('aircraft', 'vit-base', '1xb16', 'aircraft'):
    ('vit-base-p16_1xb16-mixup-200e_aircraft.py', None),
    ('stanfordcars', 'deit-small', '1xb16', 'stanfordcars'):
    ('deit-small-p16_1xb16-mixup-200e_stanfordcars.py', None),
    ('stanfordcars', 'vit-base', '1xb16', 'stanfordcars'):
    ('vit-base-p16_1xb16-mixup-200e_stanfordcars.py', None),
}
DIGITS_VARIANT = ('digits', 'vit-tiny', '1xb64', 'digits-32px')


_EPOCHS = re.compile(r'-(\d+e)$')


def _method(path):
    # '<model>_<G>xb<B>-<method>[-<E>e]_<data>.py'
    return _EPOCHS.sub('', osp.basename(path).split('_')[1].split('-', 1)[1])


def _variant(path):
    """(folder, model, GPUs x batch[-<E>e], data) of a baseline config."""
    model, run, data = osp.splitext(osp.basename(path))[0].split('_')
    epochs = _EPOCHS.search(run)
    return (osp.basename(osp.dirname(path)), model,
            run.split('-', 1)[0] + (f'-{epochs.group(1)}' if epochs else ''),
            data)


def _generator():
    path = osp.join(ROOT, 'tools', 'misc', 'make_baseline_configs.py')
    spec = importlib.util.spec_from_file_location('make_baseline_configs',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_method_has_every_variant():
    """The full matrix: each method once per recipe (and the digits CPU
    variant), nothing else."""
    found = {}
    for path in CONFIGS:
        found.setdefault(_method(path), []).append(_variant(path))
    assert set(found) == METHODS
    want = sorted(set(VARIANTS) | {DIGITS_VARIANT})
    for method, variants in found.items():
        assert sorted(variants) == want, method


def test_no_stray_baseline_files():
    """Only the matrix's configs (and the README) in configs/baselines/."""
    names = {
        osp.relpath(p, ROOT)
        for p in glob.glob(osp.join(ROOT, 'configs', 'baselines', '**', '*'),
                           recursive=True) if osp.isfile(p)
    }
    configs = {osp.relpath(p, ROOT) for p in CONFIGS}
    assert names - configs == {osp.join('configs', 'baselines', 'README.md')}
    assert len(configs) == len(METHODS) * (len(VARIANTS) + 1)


def test_generated_configs_are_up_to_date():
    """The committed configs are exactly what the generator writes
    (``python tools/misc/make_baseline_configs.py --check``)."""
    assert _generator().check(ROOT) == []


def test_generator_check_names_stale_missing_and_stray_files(tmp_path):
    gen = _generator()
    shutil.copytree(osp.join(ROOT, 'configs'), tmp_path / 'configs')
    folder = tmp_path / 'configs' / 'baselines'
    stale = folder / 'imagenet' / 'deit-tiny_4xb256-cutmix_in1k.py'
    stale.write_text(stale.read_text().replace("alpha=0.2", "alpha=0.3"))
    (folder / 'cub' / 'vit-base_1xb16-tokenmix_cub.py').unlink()
    (folder / 'aircraft' / 'deit-small_1xb16-mine_aircraft.py').write_text(
        'x = 1\n')
    assert sorted(gen.check(str(tmp_path))) == [
        'missing: configs/baselines/cub/vit-base_1xb16-tokenmix_cub.py',
        'stale: configs/baselines/imagenet/deit-tiny_4xb256-cutmix_in1k.py',
        'stray: configs/baselines/aircraft/deit-small_1xb16-mine_'
        'aircraft.py',
    ]
    assert gen.main(['--check', '--root', str(tmp_path)]) == 1
    gen.write(str(tmp_path), remove_stray=True)
    assert gen.check(str(tmp_path)) == []


@lru_cache(maxsize=None)
def _source_dict(source, model_base):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'mergemix', source))
    out = cfg.to_dict()
    if model_base:  # the model itself from the other base
        base = Config.fromfile(
            osp.join(ROOT, 'configs', '_base_', 'models', model_base))
        out['model']['backbone']['arch'] = base.model.backbone.arch
        out['model']['head']['in_channels'] = base.model.head.in_channels
    return out


@pytest.mark.parametrize('path', GENERATED, ids=osp.basename)
def test_baseline_trains_with_its_mergemix_recipe(path):
    """Same recipe for every method: the resolved config equals the
    MergeMix-comparison config's except the batch augments, TransMix's loss
    reduction and the drop path of the OpenMixup MixPro variant."""
    source, model_base = VARIANTS[_variant(path)]
    want = copy.deepcopy(_source_dict(source, model_base))
    got = Config.fromfile(path).to_dict()
    for cfg in (want, got):
        del cfg['model']['train_cfg']
    if _method(path) == 'transmix':
        assert got['model']['head']['loss'].pop('lam_reduction') == 'batch'
    if _method(path) == 'mixpro-openmixup':
        got['model']['backbone']['drop_path_rate'] = 0.1
    assert got == want


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_drop_path_is_the_recipes(path):
    """0.1 like MergeMix, except the configs that reproduce OpenMixup's
    MixPro, whose configs misspell the argument (ALGORITHM.md A10)."""
    cfg = Config.fromfile(path)
    openmixup = _method(path) == 'mixpro-openmixup'
    assert cfg.model.backbone.drop_path_rate == (0.0 if openmixup else 0.1)
    compats = {a.get('compat') for a in cfg.model.train_cfg.augments
               if a['type'] == 'MixPro'}
    assert compats == ({'openmixup'} if openmixup else
                       {None} if 'mixpro' in _method(path) else set())


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds_its_augments(path):
    cfg = Config.fromfile(path)
    train_cfg = cfg.model.train_cfg
    assert isinstance(train_cfg.augments, list)
    assert set(train_cfg) <= {'augments', 'probs'}
    for aug in train_cfg.augments:
        BATCH_AUGMENTS.build(copy.deepcopy(aug))
    probs = train_cfg.get('probs')
    if probs is not None:
        assert len(probs) == len(train_cfg.augments) and sum(probs) <= 1


@pytest.mark.parametrize('path', DIGITS_PARAMS, ids=osp.basename)
def test_digits_variant_trains_one_step(path):
    cfg = Config.fromfile(path)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg['data_preprocessor'] = copy.deepcopy(cfg.data_preprocessor)
    seed_all(0)
    model = MODELS.build(model_cfg)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    images = (torch.rand(4, 3, 32, 32) * 255).to(torch.uint8)
    data = dict(
        inputs=list(images),
        data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    losses = model.train_step(data, optim)
    assert torch.isfinite(losses['loss'])
