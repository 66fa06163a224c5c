"""Write, or check, the mixup-baseline configs of ``configs/baselines/``.

Every baseline trains with exactly the recipe of the MergeMix-comparison
config of its model and dataset (``configs/mergemix/<model>-p16_<G>xb<B>-
mixup-<E>e_<data>.py``): the same ``_base_`` files, GPUs x batch, learning
rate, warm-up, minimum lr, epochs, ``auto_scale_lr``, optimizer wrapper
(``AmpOptimWrapper`` where that config has it), ``num_classes``, seed and
drop-path rate. The recipe is read from that config, so a change there makes
the committed baselines stale (``--check`` fails). Only the batch augments
(``model.train_cfg``), TransMix's loss reduction and the drop-path rate of
the ``mixpro-openmixup`` variant differ between methods. The method settings
per dataset family and their sources are the tables of this file; see
``configs/baselines/README.md``.

The DeiT-T ImageNet baselines have no MergeMix config to copy: they use the
DeiT-S ImageNet recipe (``deit-small-p16_4xb256-mixup-300e_in1k.py``) with
the DeiT-T model base, as the paper trains DeiT-T and DeiT-S on ImageNet with
the same settings (Appendix B.2).

The ``digits`` CPU variants are not generated (they have their own, shorter
recipe and a few CPU-specific method settings).

Examples::

    python tools/misc/make_baseline_configs.py          # (re)write
    python tools/misc/make_baseline_configs.py --check  # exit 1 if stale
"""
import argparse
import ast
import os
import os.path as osp
import re
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = [
    'Recipe', 'Setting', 'METHODS', 'RECIPES', 'MANAGED_DIRS',
    'config_name', 'method_setting', 'resolve_recipe', 'render_config',
    'expected_configs', 'check', 'write', 'main'
]

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
LINE = 79

#: The methods, in the order of the tables.
METHODS: Tuple[str, ...] = (
    'vanilla', 'mixup', 'cutmix', 'deit', 'fmix', 'gridmix', 'smoothmix',
    'resizemix', 'resizemix-mmpretrain', 'saliencymix', 'attentivecutmix',
    'transmix', 'smmix', 'mixpro', 'mixpro-openmixup', 'tdattenmix',
    'tokenmix')

_MODEL_TITLES = {
    'deit-tiny': 'DeiT-T/16',
    'deit-small': 'DeiT-S/16',
    'vit-small': 'ViT-S/16 (OpenMixup ViT-S: 8 blocks, width 768)',
    'vit-base': 'ViT-B/16',
    'vit-large': 'ViT-L/16',
}
_DATA_TITLES = {
    'cifar100-224px': 'CIFAR-100 at 224 px',
    'in1k': 'ImageNet-1k',
    'cub': 'CUB-200-2011',
    'aircraft': 'FGVC-Aircraft',
    'stanfordcars': 'Stanford Cars',
}


@dataclass(frozen=True)
class Recipe:
    """One (model, dataset) cell of the matrix.

    Attributes:
        model (str): Model name in the file name, e.g. ``'deit-small'``.
        data_dir (str): Folder under ``configs/baselines/``.
        data (str): Data suffix of the file name, e.g. ``'in1k'``.
        family (str): ``'cifar'``, ``'imagenet'`` or ``'finegrained'``
            (selects the method settings).
        source (str): The MergeMix-comparison config (in
            ``configs/mergemix/``) whose recipe is copied.
        model_base (str, optional): A model base (in
            ``configs/_base_/models/``) replacing the source's, for a model
            without a MergeMix config of its own. Defaults to None.
        tag (str): Follows the method in the file name, e.g. ``'-600e'``
            for a second schedule of the same model and data. Defaults to
            ``''``.
    """

    model: str
    data_dir: str
    data: str
    family: str
    source: str
    model_base: Optional[str] = None
    tag: str = ''


def _cifar(model: str, gpus_batch: str, epochs: int = 200) -> Recipe:
    return Recipe(model, 'cifar100', 'cifar100-224px', 'cifar',
                  f'{model}-p16_{gpus_batch}-mixup-{epochs}e_'
                  'cifar100-224px.py',
                  tag='' if epochs == 200 else f'-{epochs}e')


def _fine(model: str, data: str) -> Recipe:
    return Recipe(model, data, data, 'finegrained',
                  f'{model}-p16_1xb16-mixup-200e_{data}.py')


#: The matrix: every method gets one config per recipe.
RECIPES: Tuple[Recipe, ...] = (
    _cifar('deit-tiny', '1xb100'),
    _cifar('deit-small', '1xb100'),
    _cifar('vit-small', '1xb100'),
    _cifar('vit-base', '4xb25'),
    _cifar('vit-large', '2xb50'),
    # OpenMixup's 600-epoch MergeMix recipes (paper Table A1)
    _cifar('deit-tiny', '1xb100', epochs=600),
    _cifar('deit-small', '1xb100', epochs=600),  # derived, see its config
    _cifar('vit-small', '1xb100', epochs=600),
    _cifar('vit-base', '1xb100', epochs=600),
    Recipe('deit-small', 'imagenet', 'in1k', 'imagenet',
           'deit-small-p16_4xb256-mixup-300e_in1k.py'),
    Recipe('deit-tiny', 'imagenet', 'in1k', 'imagenet',
           'deit-small-p16_4xb256-mixup-300e_in1k.py',
           model_base='deit-tiny-p16_mergemix.py'),
    _fine('deit-small', 'cub'),
    _fine('vit-base', 'cub'),
    _fine('deit-small', 'aircraft'),
    _fine('vit-base', 'aircraft'),
    _fine('deit-small', 'stanfordcars'),
    _fine('vit-base', 'stanfordcars'),
)

#: Folders of ``configs/baselines/`` whose ``*.py`` files are all generated.
MANAGED_DIRS: Tuple[str, ...] = tuple(
    sorted({r.data_dir for r in RECIPES}))


@dataclass
class Setting:
    """A method's settings on one recipe.

    Attributes:
        label (str): Display name.
        augments (list[dict]): ``model.train_cfg.augments``.
        probs (list[float], optional): ``model.train_cfg.probs``.
        head_loss (dict, optional): Extra ``model.head.loss`` keys.
        drop_path_rate (float): The backbone's drop-path rate.
        notes (list[str]): Comment paragraphs: what the method does and
            where each setting comes from.
        left_out (list[str]): Comment paragraphs: what the source recipe of
            the method adds that the shared recipe leaves out.
    """

    label: str
    augments: List[dict]
    probs: Optional[List[float]] = None
    head_loss: Optional[dict] = None
    drop_path_rate: float = 0.1
    notes: List[str] = field(default_factory=list)
    left_out: List[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Sources of the method settings
# ---------------------------------------------------------------------------
_OM = 'OpenMixup '
_OM_CIFAR = ('OpenMixup CIFAR-100 DeiT-S configs '
             '(configs/classification/cifar100/mixups/vits/deit_small/)')
_OM_IN = 'configs/classification/imagenet/mixups/deit/'
_TABLE_A2 = 'alpha from the MergeMix paper, Table A2 (fine-grained)'
_NOT_IN = ('not a published ImageNet recipe: no ImageNet DeiT config of '
           'OpenMixup or of the method\'s official code was found, so the '
           'CIFAR-100 setting is carried over')
_NOT_A2 = ('not in Table A2 of the MergeMix paper: the CIFAR-100 setting is '
           'carried over')
_LABELS = {
    'vanilla': 'No mixing', 'mixup': 'Mixup', 'cutmix': 'CutMix',
    'deit': 'DeiT (Mixup+CutMix)', 'fmix': 'FMix', 'gridmix': 'GridMix',
    'smoothmix': 'SmoothMix', 'resizemix': 'ResizeMix',
    'resizemix-mmpretrain': 'ResizeMix (mmpretrain law)',
    'saliencymix': 'SaliencyMix', 'attentivecutmix': 'Attentive-CutMix',
    'transmix': 'TransMix', 'smmix': 'SMMix', 'mixpro': 'MixPro',
    'mixpro-openmixup': 'MixPro (OpenMixup variant)',
    'tdattenmix': 'TdAttenMix', 'tokenmix': 'TokenMix'
}
_EXTRACTOR = (
    "OpenMixup's config uses a frozen torchvision ResNet-50 (7x7 map at "
    '224 px) with the same top_k=None: add extractor=dict(type=\'ResNet\', '
    "depth=50, out_indices=(3, ), init_cfg=dict(type='Pretrained', "
    "checkpoint='torchvision://resnet50')). The Attentive CutMix paper "
    'itself uses that extractor with top_k=6.')
_OPENMIXUP_MIXPRO = (
    "MixPro as OpenMixup runs it (compat='openmixup', the variant behind its "
    'published MixPro numbers): PAL attention from a no-grad pass on the '
    'clean batch, 0.1-smoothed target in the progressive factor, cell-count '
    'area, batch-mean label weight, partners may be the sample itself. '
    "OpenMixup's baseline configs spell the backbone's drop-path argument "
    '`drop_path` (docs/design/ALGORITHM.md A10), so its MixPro numbers were '
    'trained without stochastic depth: drop path 0 here too (the other '
    'baselines keep 0.1, like MergeMix).')


_DEIT_CODE_BASE = (
    "The official run also trains with its DeiT code base's own recipe "
    '(model EMA 0.99996, lr 5e-4 x batch / 512, no gradient clipping, no '
    'random erasing: --reprob 0, where the shared recipe erases with p '
    '0.25); the shared recipe is kept.')


def _mixup(alpha: float) -> dict:
    return dict(type='Mixup', alpha=alpha)


def _cifar_setting(method: str) -> Setting:
    """The CIFAR-100 settings: those of the DeiT-S CIFAR-100 baselines."""
    s = Setting(_LABELS[method], [])
    if method == 'vanilla':
        s.notes = ['No mixing (plain label-smoothed CE).']
    elif method == 'mixup':
        s.augments = [_mixup(0.8)]
        s.notes = ['Mixup, alpha 0.8 (OpenMixup CIFAR DeiT-S config).']
    elif method == 'cutmix':
        s.augments = [dict(type='CutMix', alpha=2.0)]
        s.notes = ['CutMix, alpha 2.0 (OpenMixup CIFAR DeiT-S config).']
    elif method == 'deit':
        s.augments = [_mixup(0.8), dict(type='CutMix', alpha=1.0)]
        s.notes = ['DeiT recipe: Mixup 0.8 or CutMix 1.0, 50/50 per batch.']
    elif method == 'fmix':
        s.augments = [dict(type='FMix', alpha=1.0, decay_power=3.0)]
        s.notes = [f'FMix, alpha 1.0, decay power 3 ({_OM_CIFAR}).']
    elif method == 'gridmix':
        s.augments = [_gridmix(1.0)]
        s.notes = [f"GridMix with OpenMixup's CIFAR arguments ({_OM_CIFAR})."]
    elif method == 'smoothmix':
        s.augments = [dict(type='SmoothMix', sigma_range=(0.25, 0.5))]
        s.notes = [
            'SmoothMix (Gaussian mask, sigma in [0.25, 0.5] x side), own '
            "label weight = own visible area. OpenMixup gives the own label "
            "the partner's area; add compat='openmixup' to reproduce its "
            'numbers.'
        ]
    elif method == 'resizemix':
        s.augments = [_resizemix_tau()]
        s.notes = [
            "ResizeMix with the paper's / OpenMixup's tau law (CIFAR config: "
            'tau ~ Beta(1, 1) redrawn in [0.1, 0.8], bilinear).'
        ]
    elif method == 'resizemix-mmpretrain':
        s.augments = [
            dict(type='ResizeMix', alpha=1.0, lam_min=0.1, lam_max=0.8)
        ]
        s.notes = ["mmpretrain's own ResizeMix law (pasted area ~ 1 - lam "
                   'in [0.2, 0.9]).']
    elif method == 'saliencymix':
        s.augments = [_saliencymix(0.2)]
        s.notes = [
            'SaliencyMix, alpha 0.2 (OpenMixup CIFAR DeiT-S config); '
            'spectral-residual saliency, one box for the batch (from the '
            'first partner) as OpenMixup (per_sample=True: one box per pair).'
        ]
    elif method == 'attentivecutmix':
        s.augments = [dict(type='AttentiveCutMix', alpha=2.0, top_k=None)]
        s.notes = [
            'Attentive-CutMix+ (top-k from Beta(2, 2), OpenMixup CIFAR '
            "config) with the model's own backbone as the extractor.",
            _EXTRACTOR
        ]
    elif method == 'transmix':
        s.augments = [_mixup(0.8), _transmix()]
        s.probs = [0.2, 0.8]
        s.head_loss = dict(lam_reduction='batch')
        s.notes = [
            'TransMix as OpenMixup runs it: Mixup 0.8 (p 0.2) or TransMix '
            '1.0 (p 0.8), label = 0.5 area + 0.5 last-block CLS attention of '
            'the training forward, per sample, collapsed to the batch mean '
            "in the loss as OpenMixup does (lam_reduction='batch'; 'sample' "
            "keeps the TransMix paper's per-sample weights)."
        ]
    elif method == 'smmix':
        s.augments = [_smmix(), _mixup(1.0)]
        s.probs = [0.8, 0.2]
        s.notes = ['SMMix (p 0.8) or Mixup 1.0 (p 0.2), OpenMixup CIFAR '
                   'config.']
    elif method == 'mixpro':
        s.augments = [_mixpro(), _mixup(1.0)]
        s.probs = [0.8, 0.2]
        s.notes = ['MixPro (MaskMix cells of 64 px + progressive attention '
                   'labels, p 0.8) or Mixup 1.0 (p 0.2), OpenMixup CIFAR '
                   'config.']
    elif method == 'mixpro-openmixup':
        s.augments = [_mixpro(compat='openmixup'), _mixup(1.0)]
        s.probs = [0.8, 0.2]
        s.drop_path_rate = 0.0
        s.notes = [
            _OPENMIXUP_MIXPRO, 'MixPro 1.0 (p 0.8) or Mixup 1.0 (p 0.2), as '
            "OpenMixup's CIFAR MixPro config."
        ]
    elif method == 'tdattenmix':
        s.augments = [_tdattenmix(), _mixup(0.8)]
        s.probs = [0.5, 0.5]
        s.notes = ['TdAttenMix (p 0.5) or Mixup 0.8 (p 0.5): the official '
                   'switch_prob.']
    elif method == 'tokenmix':
        s.augments = [
            dict(type='TokenMix', mask_type='block', alpha=1.0), _mixup(1.0)
        ]
        s.probs = [0.9, 0.1]
        s.notes = [
            'TokenMix (block mask, partner ratio 1 - Beta(1, 1) per batch + '
            'one row, attention label; p 0.9) or Mixup 1.0 (p 0.1), '
            'OpenMixup CIFAR config.'
        ]
    else:
        raise KeyError(method)
    return s


def _gridmix(alpha: float) -> dict:
    return dict(type='GridMix', alpha=alpha, n_holes=(2, 6),
                hole_aspect_ratio=1.0, cut_area_ratio=(0.5, 1.0),
                cut_aspect_ratio=(0.5, 2.0))


def _resizemix_tau() -> dict:
    return dict(type='ResizeMixTau', scope=(0.1, 0.8), use_alpha=True,
                alpha=1.0, interpolation='bilinear')


def _saliencymix(alpha: float) -> dict:
    return dict(type='SaliencyMix', alpha=alpha, per_sample=False)


def _transmix() -> dict:
    return dict(type='TransMix', alpha=1.0, ratio=0.5)


def _smmix() -> dict:
    return dict(type='SMMix', min_side_ratio=0.25, max_side_ratio=0.75)


def _mixpro(compat: Optional[str] = None) -> dict:
    aug = dict(type='MixPro', alpha=1.0, mask_patch_size=64)
    if compat:
        aug['compat'] = compat
    return aug


def _tdattenmix() -> dict:
    return dict(type='TdAttenMix', top_down_weight=0.5, ratio=0.5)


_EMA_SNIPPET = ("|custom_hooks = [dict(type='EMAHook', momentum=4e-05,",
                "|                     priority='ABOVE_NORMAL')]")


def _imagenet_setting(method: str, model: str) -> Setting:
    """ImageNet: OpenMixup's ImageNet DeiT configs, else the method's
    official ImageNet DeiT setting, else the CIFAR-100 setting."""
    size = 'small' if model == 'deit-small' else 'tiny'
    om_dir = f'{_OM_IN}deit_{size}/'
    base = (f'{_OM_IN}deit_small_smooth_mix_8xb128.py' if size == 'small'
            else f'{_OM_IN}deit_tiny_smooth_mix_4xb256.py')

    def om(name: str) -> str:
        return f'{_OM}{om_dir}deit_{size}_smooth_{name}_4xb256_ep300.py'

    s = _cifar_setting(method)
    if method == 'vanilla':
        s.notes = [f'No mixing (plain label-smoothed CE), as {om("vanilla")}.']
    elif method == 'mixup':
        s.augments = [_mixup(0.2)]
        s.notes = [f'Mixup, alpha 0.2 ({om("mixup_a0_2")}).']
    elif method == 'cutmix':
        s.augments = [dict(type='CutMix', alpha=0.2)]
        s.notes = [f'CutMix, alpha 0.2 ({om("cutmix_a0_2")}).']
    elif method == 'deit':
        deit = (f'{_OM_IN}deit_small/deit/deit_small_smooth_deit_8x128_'
                'fp16_ep300.py' if size == 'small' else
                f'{_OM_IN}deit_tiny/deit/deit_tiny_smooth_deit_4xb256_fp16_'
                'ep300.py')
        s.notes = [
            'DeiT recipe: Mixup 0.8 or CutMix 1.0, 50/50 per batch '
            f'({_OM}{deit}: alpha [0.8, 1.0], no mix_prob).'
        ]
    elif method == 'fmix':
        s.augments = [dict(type='FMix', alpha=0.2, decay_power=3.0)]
        s.notes = [
            f'FMix, alpha 0.2 ({om("fmix_a0_2")}), decay power 3 (the '
            f'mix_args of its base {base}).'
        ]
    elif method == 'gridmix':
        s.notes = [
            "GridMix with OpenMixup's CIFAR arguments (alpha 1.0; the hole "
            f'arguments equal the gridmix mix_args of {_OM}{base}, but no '
            'ImageNet DeiT GridMix config gives an alpha). ' + _NOT_IN + '.'
        ]
    elif method == 'smoothmix':
        s.notes.append(_NOT_IN.capitalize() + '.')
    elif method == 'resizemix':
        s.notes = [
            "ResizeMix with the paper's / OpenMixup's tau law: tau ~ "
            'Beta(1, 1) redrawn in [0.1, 0.8], bilinear '
            f'({om("resizemix_lam01_08")}: alpha 1.0; scope (0.1, 0.8), '
            'use_alpha=True in the mix_args of its base).'
        ]
    elif method == 'resizemix-mmpretrain':
        s.notes.append(
            "Alpha and range as OpenMixup's ImageNet ResizeMix "
            f'({om("resizemix_lam01_08")}), with mmpretrain\'s law, which '
            'has no ImageNet DeiT recipe of its own: the CIFAR-100 setting.')
    elif method == 'saliencymix':
        s.notes = [
            f'SaliencyMix, alpha 0.2 ({om("saliencymix_a0_2")}); '
            'spectral-residual saliency, one box for the batch (from the '
            'first partner) as OpenMixup (per_sample=True: one box per pair).'
        ]
    elif method == 'attentivecutmix':
        s.notes = [
            f'Attentive-CutMix+, alpha 2, top_k=None ({om("attentivemix_a2")}'
            "; grid_size 32 in the mix_args of its base) with the model's "
            'own backbone as the extractor.', _EXTRACTOR
        ]
    elif method == 'transmix':
        alpha = 0.8 if size == 'small' else 0.1
        s.augments = [_mixup(alpha), _transmix()]
        source = (f'{om_dir}deit_{size}_smooth_transmix_4xb256_ep300.py')
        s.notes = [
            f'TransMix as OpenMixup runs it ({_OM}{source}): Mixup {alpha} '
            '(p 0.2) or TransMix 1.0 on CutMix boxes (p 0.8), label = 0.5 '
            'area + 0.5 last-block CLS attention of the training forward, '
            'per sample, collapsed to the batch mean in the loss as '
            "OpenMixup does (lam_reduction='batch'; 'sample' keeps the "
            "TransMix paper's per-sample weights)."
        ]
        if size == 'small':
            s.left_out = [
                "OpenMixup's DeiT-S TransMix config also keeps an EMA of the "
                'weights (its EMAHook, momentum 0.99996 in its convention '
                'ema = m * ema + (1 - m) * w, linearly warmed up from 0.9 x '
                'm over the first 20 epochs = 20 x 1252 iterations, '
                'evaluated on the EMA weights) and ends the cosine at '
                'min_lr 1e-4 instead of 1e-5. mmengine\'s EMAHook uses the '
                'opposite convention (ema = (1 - m) * ema + m * w), so the '
                'same decay is momentum 1 - 0.99996 = 4e-05; it has no '
                'momentum warm-up. To reproduce that run, add',
                *_EMA_SNIPPET,
                'and set eta_min=0.0001 in the CosineAnnealingLR entry of '
                'param_scheduler below.'
            ]
        else:
            s.left_out = [
                "OpenMixup's DeiT-T TransMix config also lowers the weight "
                'decay to 0.03 ("for faster convergence"); to reproduce it, '
                'add weight_decay=0.03 to optim_wrapper.optimizer below.'
            ]
    elif method == 'smmix':
        s.augments = [_smmix(), _mixup(0.8)]
        s.probs = [0.5, 0.5]
        s.notes = [
            'SMMix (p 0.5) or Mixup 0.8 (p 0.5), side ratios 0.25-0.75: the '
            'official ImageNet DeiT setting (github.com/ChenMnZ/SMMix: '
            'script/train.sh with the main.py defaults --mixup 0.8, '
            '--mixup-switch-prob 0.5, --min_side_ratio 0.25, '
            '--max_side_ratio 0.75). OpenMixup has no ImageNet SMMix config.'
        ]
        s.left_out = [_DEIT_CODE_BASE]
    elif method == 'mixpro':
        s.augments = [_mixpro(), _mixup(0.8), dict(type='CutMix', alpha=1.0)]
        s.probs = [0.5, 0.25, 0.25]
        s.notes = [
            'MixPro (MaskMix, alpha 1.0, with progressive attention labels) '
            'with p 0.5, else the DeiT pair Mixup 0.8 / CutMix 1.0 (switch '
            'prob 0.5): the official ImageNet DeiT setting '
            f'(github.com/fistyee/MixPro: configs/deit/deit_{size}_patch14_'
            'mask56_224_alpha1.yaml: MASKMIX_PROB 0.5, MASKMIX_ALPHA 1.0, '
            'PAL_ATTN True; config.py defaults MIXUP 0.8, CUTMIX 1.0, '
            'MIXUP_SWITCH_PROB 0.5; main.py). Its DeiT uses 14 px patches '
            'and 56 px cells (4 x 4 patches per cell, a 4 x 4 grid); with '
            '16 px patches the same 4-patch cells are 64 px. OpenMixup has '
            'no ImageNet MixPro config.'
        ]
        s.left_out = [
            'The official run also trains with its own code base\'s recipe '
            '(main.py: lr 1e-3, min lr 1e-5; config.py: 20 warm-up '
            'epochs); the shared recipe is kept.'
        ]
    elif method == 'mixpro-openmixup':
        s.notes.append(_NOT_IN.capitalize() + ' (OpenMixup has no ImageNet '
                       'MixPro config).')
    elif method == 'tdattenmix':
        s.notes = [
            'TdAttenMix (p 0.5) or Mixup 0.8 (p 0.5): the official ImageNet '
            'setting (github.com/morning12138/AAAI2025_TdAttenMix: '
            'configs/imagenet-1k.sh, DeiT-S, with the main.py defaults '
            '--mixup 0.8, --mixup-switch-prob 0.5; label 0.5 area + 0.5 '
            'attention in tdattenmix.py), the same as on CIFAR-100.'
        ]
        s.left_out = [_DEIT_CODE_BASE]
    elif method == 'tokenmix':
        s.augments = [
            dict(type='TokenMix', mask_type='block', mask_ratio=0.5),
            _mixup(0.8)
        ]
        s.probs = [0.5, 0.5]
        s.notes = [
            'TokenMix (block mask, fixed partner ratio 0.5 + one row of '
            'tokens, attention label; p 0.5) or Mixup 0.8 (p 0.5): the '
            'official ImageNet DeiT setting (github.com/Sense-X/TokenMix: '
            'exp/deit_small/run.sh --mixup 0.8 --cutmix 1.0, where the '
            '"cutmix" branch is TokenMix; main.py --mixup-switch-prob 0.5 '
            '--mask-type block; tokenmix.py lam_constant 0.5, '
            'minimum_tokens 14).'
        ]
        s.left_out = [
            'The official run labels the TokenMix branch with pre-computed '
            'dense label maps of a pretrained NFNet teacher (ReLabel) and a '
            'BCE loss, and uses its own DeiT recipe (model EMA 0.99996, lr '
            '5e-4 x batch / 512, no gradient clipping; its random erasing, p '
            '0.25, is the shared recipe\'s too); '
            "here the label is the model's own attention "
            "(label='attention'; set teacher=... for a pretrained ViT)."
        ]
    return s


def _finegrained_setting(method: str) -> Setting:
    """Fine-grained: alpha from Table A2, other arguments as CIFAR-100."""
    s = _cifar_setting(method)
    if method == 'mixup':
        s.augments = [_mixup(1.0)]
        s.notes = [f'Mixup, alpha 1.0 ({_TABLE_A2}).']
    elif method == 'cutmix':
        s.augments = [dict(type='CutMix', alpha=0.2)]
        s.notes = [f'CutMix, alpha 0.2 ({_TABLE_A2}).']
    elif method == 'deit':
        s.augments = [_mixup(0.2), dict(type='CutMix', alpha=0.2)]
        s.notes = [
            'DeiT pair, Mixup or CutMix 50/50 per batch, both with alpha '
            f'0.2 ({_TABLE_A2}: its DeiT row gives one alpha, 0.2, for the '
            'pair, read here as the alpha of both draws). The DeiT defaults '
            '(Mixup 0.8, CutMix 1.0) are the -mixup-cutmix- configs of '
            'configs/mergemix/.'
        ]
    elif method == 'fmix':
        s.augments = [dict(type='FMix', alpha=0.2, decay_power=3.0)]
        s.notes = [f'FMix, alpha 0.2 ({_TABLE_A2}), decay power 3.']
    elif method == 'gridmix':
        s.augments = [_gridmix(0.2)]
        s.notes = [f'GridMix, alpha 0.2 ({_TABLE_A2}), with OpenMixup\'s '
                   'CIFAR hole arguments.']
    elif method == 'smoothmix':
        s.notes.append(
            'Table A2 lists alpha 0.2 for SmoothMix, but SmoothMix draws no '
            "Beta ratio (sigma ~ U(0.25, 0.5); OpenMixup's smoothmix draws "
            'a lam from Beta(alpha, alpha) and then overwrites it with the '
            'mask area), so there is nothing to set: the CIFAR-100 setting.')
    elif method in ('resizemix', 'resizemix-mmpretrain'):
        s.notes.append(f'Alpha 1.0 ({_TABLE_A2}, the ResizeMix row), as on '
                       'CIFAR-100.')
    elif method == 'saliencymix':
        s.notes.append(f'Alpha 0.2 ({_TABLE_A2}), as on CIFAR-100.')
    elif method == 'attentivecutmix':
        s.notes.append(f'Alpha 2.0 ({_TABLE_A2}), as on CIFAR-100.')
    elif method == 'transmix':
        s.notes.append(f'TransMix alpha 1.0 ({_TABLE_A2}), as on CIFAR-100; '
                       'the paired Mixup keeps its CIFAR-100 alpha.')
    elif method in ('smmix', 'tdattenmix'):
        s.notes.append(
            'Table A2 lists alpha 1.0; the method itself draws no Beta ratio '
            '(a random window size), so its CIFAR-100 setting is kept, the '
            'paired Mixup with its CIFAR-100 alpha included.')
    elif method in ('mixpro', 'mixpro-openmixup'):
        s.notes.append(f'MixPro alpha 1.0 ({_TABLE_A2}, the MixPro row), as '
                       'on CIFAR-100.')
    elif method == 'tokenmix':
        s.notes.append(_NOT_A2.capitalize() + '.')
    return s


def method_setting(method: str, recipe: Recipe) -> Setting:
    """The settings of ``method`` on ``recipe``.

    Args:
        method (str): One of :data:`METHODS`.
        recipe (Recipe): The matrix cell.

    Returns:
        Setting: Augments, probs, loss and drop-path settings with their
        sources.

    Raises:
        KeyError: For an unknown method or family.
    """
    if method not in METHODS:
        raise KeyError(method)
    if recipe.family == 'cifar':
        s = _cifar_setting(method)
        s.notes.append('CIFAR-100 settings: those of the DeiT-S CIFAR-100 '
                       'baseline, on every model.')
        return s
    if recipe.family == 'imagenet':
        return _imagenet_setting(method, recipe.model)
    if recipe.family == 'finegrained':
        return _finegrained_setting(method)
    raise KeyError(recipe.family)


# ---------------------------------------------------------------------------
# The recipe, read from the MergeMix-comparison config
# ---------------------------------------------------------------------------
def config_name(method: str, recipe: Recipe) -> str:
    """Path of a baseline config relative to the repository root.

    Args:
        method (str): The method.
        recipe (Recipe): The matrix cell.

    Returns:
        str: ``configs/baselines/<dir>/<model>_<G>xb<B>-<method>[<tag>]_
        <data>.py``.
    """
    gpus_batch = _gpus_batch(recipe.source)
    return osp.join('configs', 'baselines', recipe.data_dir,
                    f'{recipe.model}_{gpus_batch}-{method}{recipe.tag}_'
                    f'{recipe.data}.py')


def _gpus_batch(source: str) -> str:
    match = re.search(r'_(\d+xb\d+)-', source)
    if not match:
        raise ValueError(f'no <G>xb<B> in {source}')
    return match.group(1)


def _source_bases(path: str) -> List[str]:
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == '_base_'):
            return list(ast.literal_eval(node.value))
    raise ValueError(f'{path} has no _base_ list')


def resolve_recipe(recipe: Recipe, root: str = ROOT) -> Dict[str, Any]:
    """Read a recipe from its MergeMix-comparison config.

    Args:
        recipe (Recipe): The matrix cell.
        root (str): Repository root. Defaults to this checkout.

    Returns:
        dict: ``bases`` (paths relative to the baseline's folder), ``gpus``,
        ``batch``, ``lr``, ``weight_decay``, ``optim_type``, ``loss_scale``,
        ``param_scheduler``, ``epochs``, ``base_batch_size``,
        ``num_classes``, ``randomness`` and ``source`` (relative path).
    """
    from mmengine.config import Config
    src = osp.join(root, 'configs', 'mergemix', recipe.source)
    out_dir = osp.join(root, 'configs', 'baselines', recipe.data_dir)
    bases = []
    for base in _source_bases(src):
        full = osp.normpath(osp.join(osp.dirname(src), base))
        if recipe.model_base and osp.basename(
                osp.dirname(full)) == 'models':
            full = osp.join(osp.dirname(full), recipe.model_base)
        bases.append(osp.relpath(full, out_dir).replace(os.sep, '/'))
    cfg = Config.fromfile(src, import_custom_modules=False)
    gpus, batch = (int(v) for v in _gpus_batch(recipe.source).split('xb'))
    if cfg.train_dataloader.batch_size != batch:
        raise ValueError(f'{src}: batch_size differs from its name')
    optim = cfg.optim_wrapper
    return dict(
        source=osp.relpath(src, root).replace(os.sep, '/'),
        bases=bases,
        gpus=gpus,
        batch=batch,
        lr=optim.optimizer.lr,
        weight_decay=optim.optimizer.weight_decay,
        optimizer=optim.optimizer.type,
        optim_type=optim.get('type'),
        loss_scale=optim.get('loss_scale'),
        param_scheduler=[dict(s) for s in cfg.param_scheduler],
        epochs=cfg.train_cfg.max_epochs,
        by_epoch=cfg.train_cfg.by_epoch,
        base_batch_size=cfg.auto_scale_lr.base_batch_size,
        num_classes=cfg.model.head.num_classes,
        randomness=dict(cfg.randomness),
    )


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------
def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return 'dict(' + ', '.join(f'{k}={_flat(v)}'
                                   for k, v in value.items()) + ')'
    if isinstance(value, list):
        return '[' + ', '.join(_flat(v) for v in value) + ']'
    if isinstance(value, tuple):
        inner = ', '.join(_flat(v) for v in value)
        return f'({inner}, )' if len(value) == 1 else f'({inner})'
    return repr(value)


def _scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _fmt(value: Any, column: int, indent: int) -> str:
    """``value`` as source starting at ``column``, nested blocks indented
    from ``indent``, lines of at most :data:`LINE` characters."""
    flat = _flat(value)
    if column + len(flat) <= LINE - 2:  # room for ',' / ')'
        return flat
    pad = ' ' * (indent + 4)
    if isinstance(value, dict) and all(_scalar(v) for v in value.values()):
        # dict(a=1, b=2,
        #      c=3): filled, continuation under the first argument
        lines, cur, start = [], 'dict(', column + 5
        for i, (k, v) in enumerate(value.items()):
            item = f'{k}={_flat(v)}' + (',' if i < len(value) - 1 else ')')
            sep = '' if cur.endswith('(') else ' '
            if cur.strip() and len(cur) + len(sep) + len(item) + (
                    column if not lines else 0) > LINE - 1:
                lines.append(cur.rstrip())
                cur = ' ' * start + item
            else:
                cur += sep + item
        lines.append(cur)
        return '\n'.join(lines)
    if isinstance(value, dict):
        items = [
            pad + f'{k}=' + _fmt(v, len(pad) + len(k) + 1, indent + 4)
            for k, v in value.items()
        ]
        return 'dict(\n' + ',\n'.join(items) + ')'
    if isinstance(value, list):
        items = [pad + _fmt(v, len(pad), indent + 4) + ',' for v in value]
        return '[\n' + '\n'.join(items) + '\n' + ' ' * indent + ']'
    return flat


def _assign(name: str, value: Any) -> str:
    return f'{name} = ' + _fmt(value, len(name) + 3, 0)


def _comment(paragraphs: Sequence[str], first: str = '') -> List[str]:
    """Wrap paragraphs as ``# `` comment lines; a paragraph starting with
    ``|`` is code, kept on one line (indented)."""
    lines = []
    for i, text in enumerate(paragraphs):
        if text.startswith('|'):
            lines.append('#   ' + text[1:])
            continue
        lead = first if i == 0 else ''
        lines += textwrap.wrap(lead + text, LINE, initial_indent='# ',
                               subsequent_indent='# ',
                               break_on_hyphens=False, break_long_words=False)
    return lines


def render_config(method: str, recipe: Recipe,
                  resolved: Dict[str, Any]) -> str:
    """The text of one baseline config.

    Args:
        method (str): The method.
        recipe (Recipe): The matrix cell.
        resolved (dict): :func:`resolve_recipe` of ``recipe``.

    Returns:
        str: The file content.
    """
    s = method_setting(method, recipe)
    r = resolved
    title = (f'{s.label} baseline: {_MODEL_TITLES[recipe.model]}, '
             f'{_DATA_TITLES[recipe.data]}'
             f'{", %d epochs" % r["epochs"] if recipe.tag else ""}.')
    recipe_text = (f'Recipe: exactly that of {r["source"]} (the MergeMix '
                   'comparison; every method trains with it, only the '
                   'augments differ; see configs/baselines/README.md)')
    if recipe.model_base:
        recipe_text += (
            f', with the model base {recipe.model_base}: there is no '
            f'{_MODEL_TITLES[recipe.model]} ImageNet MergeMix config, and '
            'the paper trains DeiT-T and DeiT-S on ImageNet with the same '
            'settings (Appendix B.2)')
    recipe_text += '.'
    if recipe.family == 'finegrained':
        recipe_text += (' Fine-tunes from ImageNet weights as in the paper: '
                        'pass --cfg-options load_from=PATH.')
    lines = _comment([title, recipe_text])
    lines += _comment(s.notes, first='Method: ')
    if s.left_out:
        lines += _comment(s.left_out, first='Left out (same-recipe rule): ')
    lines.append('# Generated by tools/misc/make_baseline_configs.py: edit '
                 'that, not this file.')
    lines.append('_base_ = [')
    lines += [f"    '{b}'," for b in r['bases']]
    lines.append(']')

    train_cfg: Dict[str, Any] = dict(augments=s.augments)
    if s.probs is not None:
        train_cfg['probs'] = s.probs
    head: Dict[str, Any] = dict(num_classes=r['num_classes'])
    if s.head_loss:
        head['loss'] = dict(s.head_loss)
    model = dict(backbone=dict(drop_path_rate=s.drop_path_rate), head=head,
                 train_cfg=train_cfg)
    lines.append(_assign('model', model))
    lines.append('')
    lines.append('# Everything a result depends on, in this file:')
    lines.append(f'# {r["gpus"]} GPU(s) x {r["batch"]} images per GPU, '
                 f'{r["epochs"]} epochs, lr {r["lr"]!r} '
                 f'({r["optimizer"]}, wd {r["weight_decay"]!r}).')
    lines.append(_assign('train_dataloader', dict(batch_size=r['batch'])))
    if r['optim_type']:
        lines += [
            'optim_wrapper = dict(',
            '    # fp16 as in the official config (GPU only; remove on CPU)',
            f'    type={r["optim_type"]!r},',
            f'    loss_scale={r["loss_scale"]!r},',
            f'    optimizer=dict(lr={r["lr"]!r}))',
        ]
    else:
        lines.append(_assign('optim_wrapper', dict(optimizer=dict(
            lr=r['lr']))))
    lines.append(_assign('param_scheduler', r['param_scheduler']))
    lines.append(_assign('train_cfg', dict(by_epoch=r['by_epoch'],
                                           max_epochs=r['epochs'])))
    lines.append(_assign('auto_scale_lr',
                         dict(base_batch_size=r['base_batch_size'])))
    lines.append(_assign('randomness', r['randomness']))
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------
def expected_configs(root: str = ROOT) -> Dict[str, str]:
    """Every generated config.

    Args:
        root (str): Repository root. Defaults to this checkout.

    Returns:
        dict[str, str]: Path relative to ``root`` -> content.
    """
    out = {}
    for recipe in RECIPES:
        resolved = resolve_recipe(recipe, root)
        for method in METHODS:
            out[config_name(method, recipe)] = render_config(
                method, recipe, resolved)
    return out


def _committed(root: str) -> List[str]:
    found = []
    for folder in MANAGED_DIRS:
        path = osp.join(root, 'configs', 'baselines', folder)
        if osp.isdir(path):
            found += [
                osp.join('configs', 'baselines', folder, name)
                for name in sorted(os.listdir(path)) if name.endswith('.py')
            ]
    return found


def _read(root: str, rel: str) -> Optional[str]:
    """The committed text of ``rel`` (None if there is no such file)."""
    path = osp.join(root, rel)
    if not osp.exists(path):
        return None
    with open(path) as f:
        return f.read()


def _stray(root: str, expected: Dict[str, str]) -> List[str]:
    """Committed configs of the generated folders the generator does not
    write."""
    return [rel for rel in _committed(root) if rel not in expected]


def check(root: str = ROOT) -> List[str]:
    """Compare the committed configs with what :func:`write` would write.

    Args:
        root (str): Repository root. Defaults to this checkout.

    Returns:
        list[str]: One line per problem (``stale: PATH``, ``missing:
        PATH``, ``stray: PATH``); empty when up to date.
    """
    expected = expected_configs(root)
    problems = []
    for rel, text in sorted(expected.items()):
        old = _read(root, rel)
        if old is None:
            problems.append(f'missing: {rel}')
        elif old != text:
            problems.append(f'stale: {rel}')
    problems += [f'stray: {rel}' for rel in _stray(root, expected)]
    return problems


def write(root: str = ROOT, remove_stray: bool = False) -> List[str]:
    """(Re)write every generated config whose content differs.

    Args:
        root (str): Repository root. Defaults to this checkout.
        remove_stray (bool): Also delete ``*.py`` files of the generated
            folders that the generator does not write. Defaults to False.

    Returns:
        list[str]: The paths written or removed, relative to ``root``.
    """
    from mergemix_mm.utils.checkpoint_safety import atomic_write_text
    expected = expected_configs(root)
    changed = []
    for rel, text in sorted(expected.items()):
        if _read(root, rel) != text:
            # never a half-written config (the folder is created)
            atomic_write_text(text, osp.join(root, rel))
            changed.append(rel)
    if remove_stray:
        for rel in _stray(root, expected):
            os.remove(osp.join(root, rel))
            changed.append(rel)
    return changed


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point.

    Args:
        argv (list[str], optional): Arguments. Defaults to ``sys.argv``.

    Returns:
        int: 0 on success, 1 when ``--check`` finds a stale, missing or
        stray config.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--check', action='store_true',
        help='write nothing; exit 1 and name every committed config that '
        'differs from what would be written (or is missing / stray)')
    parser.add_argument(
        '--remove-stray', action='store_true',
        help='also delete *.py files of the generated folders that the '
        'generator does not write')
    parser.add_argument('--root', default=ROOT,
                        help='repository root (default: this checkout)')
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.root)
        for line in problems:
            print(line)
        if problems:
            print(f'{len(problems)} baseline config(s) out of date; run '
                  'python tools/misc/make_baseline_configs.py',
                  file=sys.stderr)
            return 1
        print(f'{len(RECIPES) * len(METHODS)} baseline configs up to date')
        return 0
    changed = write(args.root, remove_stray=args.remove_stray)
    for rel in changed:
        print(f'wrote {rel}' if osp.exists(osp.join(args.root, rel)) else
              f'removed {rel}')
    print(f'{len(changed)} file(s) changed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
