"""Every config under configs/ parses, names registered modules, and builds
its model (datasets are checked for a registered type and a buildable
pipeline; they are not loaded)."""
import ast
import glob
import math
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
    with torch.device('meta') if _meta_build(path) else _null():
        model = MODELS.build(model_cfg)
    assert model is not None


def _meta_build(path):
    """ViT-L, and the generated baselines (whose resolved configs equal
    their MergeMix-comparison config's but for the augments, a test of
    test_baseline_configs.py; those configs build for real here), are
    built on the meta device: the constructors run, no weights are
    allocated or initialised."""
    generated = (osp.sep + 'baselines' + osp.sep in path
                 and '_digits-' not in path)
    return 'large' in path or generated


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


def _mmcv_cosine_lr(t, total, warmup, base, eta_min, ratio):
    """lr at iteration ``t`` of mmcv's ``CosineAnnealing`` lr_config with a
    linear warm-up (OpenMixup's recipes): the cosine spans the whole run and
    the warm-up scales it."""
    lr = eta_min + 0.5 * (base - eta_min) * (1 + math.cos(math.pi * t / total))
    if t < warmup:
        # mmengine's LinearLR reaches the full lr one iteration before the
        # end of the warm-up (mmcv at its end): 1/(iterations) apart.
        lr *= 1 - (1 - t / (warmup - 1)) * (1 - ratio)
    return lr


def _openmixup_schedules():
    schedules = {}
    for path in CONFIGS:
        if osp.sep + 'digits' in path or 'digits-' in osp.basename(path):
            continue  # the CPU demo's own short recipe
        cfg = Config.fromfile(path)
        kinds = [s['type'] for s in cfg.param_scheduler]
        assert kinds == ['LinearLR', 'CosineAnnealingLR'], path
        warm, cos = cfg.param_scheduler
        key = (warm['start_factor'], warm['begin'], warm['end'], cos['begin'],
               cos['end'], cos['eta_min'], cfg.train_cfg.max_epochs,
               cfg.optim_wrapper.optimizer.lr)
        schedules.setdefault(key, osp.relpath(path, ROOT))
    return schedules


def test_schedules_follow_mmcv_cosine_with_warmup():
    """Every OpenMixup recipe's lr, per iteration, is mmcv's
    CosineAnnealing-with-linear-warm-up lr (ALGORITHM.md §8.2), not a
    cosine restarted after the warm-up."""
    from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR
    schedules = _openmixup_schedules()
    assert len(schedules) >= 4
    epoch_len = 5
    for key, path in schedules.items():
        ratio, w_begin, w_end, c_begin, c_end, eta_min, epochs, base = key
        assert (w_begin, c_begin, c_end) == (0, 0, epochs), path
        param = torch.nn.Parameter(torch.zeros(1))
        optim = torch.optim.SGD([param], lr=base)
        scheds = [
            LinearLR(optim, start_factor=ratio, begin=0,
                     end=w_end * epoch_len),
            CosineAnnealingLR(optim, eta_min=eta_min, begin=0,
                              end=epochs * epoch_len)
        ]
        total = epochs * epoch_len
        for t in range(total):
            want = _mmcv_cosine_lr(t, total, w_end * epoch_len, base,
                                   eta_min, ratio)
            got = optim.param_groups[0]['lr']
            # The chained cosine moves eta_min in before the warm-up ends:
            # up to 1.2 % apart there when eta_min is half the lr
            # (aircraft), 0.002 % for the CIFAR / ImageNet recipes.
            assert got == pytest.approx(want, rel=0.02), (path, t)
            optim.step()
            for sched in scheds:
                sched.step()


# MergeMix's official recipes, transcribed from ALGORITHM.md §8.2 (OpenMixup
# configs): config -> (arch, merge_num, 0-based attn block, lam_scale,
# tome_in_mix, lam_margin, lr, min_lr, warm-up epochs, epochs, fp16).
OFFICIAL_RECIPES = {
    'deit-small-p16_1xb100-mergemix-200e_cifar100-224px.py':
    ('deit-small', 98, 8, True, False, -1, 1e-3, 0, 20, 200, False),
    'timm-deit-small-p16_1xb100-mergemix-200e_cifar100-224px.py':
    (None, 98, 8, True, False, -1, 1e-3, 0, 20, 200, False),
    'deit-tiny-p16_1xb100-mergemix-200e_cifar100-224px.py':
    ('deit-tiny', 98, 8, True, False, -1, 1e-3, 0, 20, 200, False),
    'deit-tiny-p16_1xb100-mergemix-600e_cifar100-224px.py':
    ('deit-tiny', 98, 8, True, False, -1, 1e-3, 1e-6, 20, 600, False),
    # derived: no DeiT-S 600-epoch config was released; OpenMixup's DeiT-T
    # and DeiT-S 200-epoch recipes are the same, so DeiT-T's 600-epoch one
    'deit-small-p16_1xb100-mergemix-600e_cifar100-224px.py':
    ('deit-small', 98, 8, True, False, -1, 1e-3, 1e-6, 20, 600, False),
    'vit-small-p16_1xb100-mergemix-600e_cifar100-224px.py':
    ('s', 98, 5, True, False, -1, 5e-4, 1e-6, 20, 600, False),
    'vit-base-p16_1xb100-mergemix-600e_cifar100-224px.py':
    ('b', 98, 8, True, False, -1, 5e-4, 0, 20, 600, True),
    'vit-base-p16_4xb25-mergemix-200e_cifar100-224px.py':
    ('b', 98, 8, True, True, -1, 5e-4, 1e-6, 20, 200, False),
    'vit-small-p16_1xb100-mergemix-200e_cifar100-224px.py':
    ('s', 98, 5, True, False, -1, 5e-4, 1e-6, 20, 200, False),
    'vit-large-p16_2xb50-mergemix-200e_cifar100-224px.py':
    ('l', 98, 17, True, True, 0.03, 2e-4, 1e-6, 20, 200, True),
    'deit-small-p16_4xb256-mergemix-300e_in1k.py':
    ('deit-small', 49, 11, False, True, -1, 1e-3, 1e-5, 5, 300, True),
    'deit-small-p16_1xb16-mergemix-200e_cub.py':
    ('deit-small', 147, 8, False, True, -1, 1e-5, 1e-7, 20, 200, False),
    'vit-base-p16_1xb16-mergemix-200e_cub.py':
    ('b', 98, 8, True, True, -1, 1e-5, 1e-6, 20, 200, False),
    'deit-small-p16_1xb16-mergemix-200e_stanfordcars.py':
    ('deit-small', 98, 11, False, True, -1, 1e-5, 1e-6, 20, 200, False),
    'vit-base-p16_1xb16-mergemix-200e_stanfordcars.py':
    ('b', 98, 11, False, True, -1, 1e-5, 1e-6, 20, 200, False),
    'deit-small-p16_1xb16-mergemix-200e_aircraft.py':
    ('deit-small', 98, 11, False, True, -1, 1e-5, 5e-6, 20, 200, False),
    'vit-base-p16_1xb16-mergemix-200e_aircraft.py':
    ('b', 98, 11, True, True, -1, 1e-5, 1e-6, 20, 200, False),
}


def test_every_mergemix_recipe_config_is_in_the_table():
    found = {
        osp.basename(p)
        for p in glob.glob(osp.join(ROOT, 'configs', 'mergemix', '*.py'))
        if '-mergemix-' in osp.basename(p)
    }
    assert found == set(OFFICIAL_RECIPES)


@pytest.mark.parametrize('name', sorted(OFFICIAL_RECIPES))
def test_mergemix_config_follows_the_official_recipe(name):
    (arch, merge_num, attn_layer, lam_scale, tome_in_mix, lam_margin, lr,
     min_lr, warmup, epochs, fp16) = OFFICIAL_RECIPES[name]
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'mergemix', name))
    model = cfg.model
    if arch is not None:
        assert model.backbone.arch == arch
    assert model.backbone.merge_num == merge_num
    assert model.backbone.drop_path_rate == 0.1
    (augment, ) = model.train_cfg.augments
    assert augment.type == 'MergeMix' and augment.alpha == 1.0
    assert augment.merge_num == merge_num
    assert augment.attn_layer == attn_layer
    assert augment.lam_scale is lam_scale
    assert augment.lam_margin == lam_margin
    assert augment.get('mask_leaked', False) is False
    assert model.tome_in_mix is tome_in_mix
    # the classifier's hidden base loss: Mixup(0.8) on a second copy
    assert model.aux_loss == 'mixup' and model.aux_alpha == 0.8
    assert model.head.loss.label_smooth_val == 0.1
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(lr)
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.clip_grad.max_norm == 5.0
    warm, cosine = cfg.param_scheduler
    assert (warm.start_factor, warm.end) == (1e-5, warmup)
    assert cosine.eta_min == pytest.approx(min_lr)
    assert cfg.train_cfg.max_epochs == epochs
    assert (cfg.optim_wrapper.get('type') == 'AmpOptimWrapper') is fp16


COMPARISONS = {
    'mixup': [('Mixup', )],
    'cutmix': [('CutMix', )],
    'mixup-cutmix': [('Mixup', 'CutMix')],
}


def _recipe(cfg):
    """What a MergeMix config and its comparison configs must share."""
    warm, cosine = cfg.param_scheduler
    backbone = cfg.model.backbone
    return dict(
        arch=backbone.get('arch'),
        timm=backbone.get('model_name'),
        data=cfg.train_dataloader.dataset.type,
        classes=cfg.model.head.num_classes,
        batch=cfg.train_dataloader.batch_size,
        epochs=cfg.train_cfg.max_epochs,
        lr=cfg.optim_wrapper.optimizer.lr,
        warmup=(warm.start_factor, warm.end),
        wrapper=cfg.optim_wrapper.get('type', 'OptimWrapper'),
        scale=cfg.get('auto_scale_lr', {}).get('base_batch_size'),
        seed=cfg.randomness.seed,
        drop_path=backbone.drop_path_rate)


@pytest.mark.parametrize('name', sorted(
    n for n in OFFICIAL_RECIPES if not n.startswith('timm-')))
def test_mergemix_recipe_has_its_comparison_configs(name):
    """Every MergeMix recipe sits next to Mixup, CutMix and Mixup+CutMix
    configs that train the same model on the same data, batch, epochs, lr,
    warm-up, cosine floor and precision; only the augments differ. Where
    the official MergeMix recipe anneals to 0 (CIFAR DeiT-T/S 200e, DeiT-B
    600e) the comparisons keep the 1e-6 floor of OpenMixup's baselines."""
    path = osp.join(ROOT, 'configs', 'mergemix', name)
    mergemix = Config.fromfile(path)
    want = _recipe(mergemix)
    floor = mergemix.param_scheduler[1].eta_min or 1e-6
    first = None
    for variant, (types, ) in COMPARISONS.items():
        other = path.replace('-mergemix-', f'-{variant}-')
        assert osp.exists(other), f'missing {osp.basename(other)}'
        cfg = Config.fromfile(other)
        assert _recipe(cfg) == want, osp.basename(other)
        # The comparisons among themselves: everything but the augments
        # (weight decay, gradient clipping, data pipeline, head loss, ...).
        rest = cfg.to_dict()
        del rest['model']['train_cfg']
        first = rest if first is None else first
        assert rest == first, osp.basename(other)
        assert tuple(a['type']
                     for a in cfg.model.train_cfg.augments) == types
        assert cfg.model.backbone.merge_num == 0
        assert cfg.model.get('aux_loss') is None
        assert cfg.param_scheduler[1].eta_min == pytest.approx(floor)


def _baseline_twin(path, variant):
    """The configs/baselines/ config of the same recipe and method."""
    name = osp.basename(path)
    model, rest = name.split('-p16_', 1)
    run, data = rest.split(f'-{variant}-', 1)
    epochs, data = data.split('_', 1)
    tag = '' if epochs == '200e' or data.startswith('in1k') else f'-{epochs}'
    folder = {'cifar100-224px.py': 'cifar100', 'in1k.py': 'imagenet'}.get(
        data, data[:-3])
    return osp.join(ROOT, 'configs', 'baselines', folder,
                    f'{model}_{run}-{variant}{tag}_{data}')


@pytest.mark.parametrize('name', sorted(
    n for n in OFFICIAL_RECIPES if not n.startswith('timm-')))
def test_comparison_alphas_are_the_baselines(name):
    """The Mixup and CutMix next to a MergeMix recipe draw with the alphas
    of the same method's baseline on that recipe (OpenMixup's CIFAR-100 and
    ImageNet DeiT configs, the paper's Table A2 on fine-grained data)."""
    path = osp.join(ROOT, 'configs', 'mergemix', name)
    for variant in ('mixup', 'cutmix'):
        comparison = path.replace('-mergemix-', f'-{variant}-')
        twin = _baseline_twin(comparison, variant)
        assert osp.exists(twin), twin
        assert (Config.fromfile(comparison).model.train_cfg.augments ==
                Config.fromfile(twin).model.train_cfg.augments)
