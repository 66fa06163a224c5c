"""Bad-input matrix (issue 10, item 5): the invalid settings and inputs a user
can produce, fed to every registered component, must raise a clear
``ValueError``/``TypeError`` (or a subclass, e.g. ``FileNotFoundError``) whose
message names the setting or file. Valid edge cases are not errors: a batch of
one passes through every augment unmixed.

Cases where a component does not behave like that yet are marked
``xfail(strict=True)`` with the finding as the reason (the component belongs
to another module; see the report / docs/reliability.md). ``strict`` makes
the case fail as soon as the component is fixed, so the mark gets removed.

Data-loading faults (corrupted images in an ImageNet-style folder, skipping
bad samples) are tested in depth in
``tests/test_datasets/test_safe_loading.py``; one case here checks that the
error names the file.
"""
import importlib.util
import json
import os.path as osp
import warnings

import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import BATCH_AUGMENTS, DATASETS, HOOKS, MODELS
from mmpretrain.registry import TRANSFORMS

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CLEAR = (ValueError, TypeError, FileNotFoundError)


def xfail(reason):
    return pytest.mark.xfail(strict=True, reason=reason)


def case(*values, reason=None, id=None):
    marks = [xfail(reason)] if reason else []
    return pytest.param(*values, marks=marks, id=id)


def expect_clear(fn, *names, exc=CLEAR):
    """``fn()`` raises ``exc`` and the message contains every name."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(exc) as info:
            fn()
    msg = str(info.value)
    for name in names:
        assert name in msg, f'{name!r} not in message: {msg!r}'
    return msg


@pytest.fixture(autouse=True, scope='module')
def _mmpretrain_scope():
    # Earlier tests may leave another default scope current.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


# ----------------------------------------------------------------------
# 1. batch-augment settings (constructor)
AUGMENT_SETTINGS = [
    case('MergeMix', dict(alpha=0), 'alpha=0'),
    case('MergeMix', dict(alpha='1'), "alpha='1'"),
    case('MergeMix', dict(attn_layer=1.5), 'attn_layer=1.5'),
    case('MergeMix', dict(merge_num=-2), 'merge_num=-2'),
    case('MergeMix', dict(mode='pixel'), "mode='pixel'"),
    case('MergeMix', dict(compat='timm'), "compat='timm'"),
    case('MergeMix', dict(lam_reduction='mean'), "lam_reduction='mean'"),
    case('MergeMix', dict(lam_margin=0.7), 'lam_margin=0.7'),
    case('MergeMix', dict(lam_scale='False'), "lam_scale='False'"),
    case('MergeMix', dict(mask_leaked='no'), "mask_leaked='no'"),
    case('MergeMix', dict(schedule_compat='bogus'), "schedule_compat='bogus'"),
    case('MergeMix', dict(merge_inflect=2.0), 'merge_inflect=2.0'),
    case('MergeMix', dict(attn_eval_mode=1), 'attn_eval_mode=1'),
    case('MergeMix', dict(merge_inflect='x'), "merge_inflect='x'"),
    case('AttentiveCutMix', dict(alpha=-1), 'alpha'),
    case('AttentiveCutMix', dict(top_k=0), 'top_k'),
    case('AttentiveCutMix', dict(saliency='bogus'), 'saliency'),
    case('FMix', dict(decay_power=0), 'decay_power'),
    case('FMix', dict(max_soft=0.6), 'max_soft'),
    case('GridMix', dict(n_holes=0), 'n_holes'),
    case('GridMix', dict(cut_area_ratio=(1.0, 0.5)), 'cut_area_ratio'),
    case('MixPro', dict(mask_patch_size=0), 'mask_patch_size'),
    case('MixPro', dict(attention_label='yes'), 'attention_label'),
    case('MixPro', dict(similarity_smoothing=1.0), 'similarity_smoothing'),
    case('ResizeMixTau', dict(scope=(0.8, 0.1)), 'scope'),
    case('ResizeMixTau', dict(interpolation='bogus'), 'interpolation'),
    case('SaliencyMix', dict(work_size=0), 'work_size'),
    case('SaliencyMix', dict(per_sample='yes'), 'per_sample'),
    case('SMMix', dict(min_side_ratio=0), 'min_side_ratio'),
    case('SMMix', dict(max_side_ratio=1.5), 'max_side_ratio'),
    case('SmoothMix', dict(sigma_range=(0.5, 0.25)), 'sigma_range'),
    case('TdAttenMix', dict(top_down_weight=2), 'top_down_weight'),
    case('TokenMix', dict(mask_type='bogus'), 'mask_type'),
    case('TokenMix', dict(mask_ratio=1.5), 'mask_ratio'),
    case('TokenMix', dict(label='bogus'), 'label'),
    case('TransMix', dict(ratio=1.5), 'ratio'),
    case('TransMix', dict(alpha=0), 'alpha'),
    case('Mixup', dict(alpha=0), 'alpha',
         reason='upstream mmpretrain Mixup(alpha=0): bare AssertionError '
         'without a message'),
    case('CutMix', dict(alpha=-1), 'alpha',
         reason='upstream mmpretrain CutMix(alpha=-1): bare AssertionError '
         'without a message'),
]


@pytest.mark.parametrize('name, kwargs, setting', AUGMENT_SETTINGS)
def test_augment_rejects_bad_setting(name, kwargs, setting):
    expect_clear(lambda: BATCH_AUGMENTS.build(dict(type=name, **kwargs)),
                 setting)


def test_every_registered_augment_is_in_the_matrix():
    """New augments must be added to the matrix (at least one case)."""
    covered = {p.values[0] for p in AUGMENT_SETTINGS}
    ours = {
        n for n, cls in BATCH_AUGMENTS.module_dict.items()
        if cls.__module__.startswith('mergemix_mm')
    }
    assert ours <= covered, sorted(ours - covered)


# ----------------------------------------------------------------------
# 2. batch-augment inputs (call), every augment bound to a tiny classifier
VIT = dict(
    type='VisionTransformer',
    arch=dict(embed_dims=32, num_layers=2, num_heads=2,
              feedforward_channels=64),
    img_size=32,
    patch_size=8,
    out_type='cls_token')
AUG_CFGS = {
    'MergeMix': dict(attn_layer=1, merge_num=4),
    'AttentiveCutMix': dict(grid_size=4),
    'FMix': {},
    'GridMix': {},
    'MixPro': dict(mask_patch_size=8),
    'ResizeMixTau': {},
    'SaliencyMix': {},
    'SMMix': {},
    'SmoothMix': {},
    'TdAttenMix': {},
    'TokenMix': {},
    'TransMix': {},
}
UPSTREAM = {'Mixup': dict(alpha=1.0), 'CutMix': dict(alpha=1.0),
            'ResizeMix': dict(alpha=1.0)}
_BUILT = {}


def bound_augment(name):
    """The augment, built inside (and bound to) a tiny MergeMixClassifier."""
    if name not in _BUILT:
        torch.manual_seed(0)
        cfg = dict(type=name, **{**AUG_CFGS, **UPSTREAM}[name])
        model = MODELS.build(
            dict(
                type='MergeMixClassifier',
                backbone=VIT,
                head=dict(
                    type='MixLabelClsHead', num_classes=10, in_channels=32,
                    loss=dict(type='MixedLabelCrossEntropyLoss')),
                data_preprocessor=dict(
                    num_classes=10, mean=[0.] * 3, std=[1.] * 3,
                    to_rgb=False),
                train_cfg=dict(augments=[cfg])))
        _BUILT[name] = model.data_preprocessor.batch_augments.augments[0]
    return _BUILT[name]


def _nan_batch():
    x = torch.randn(4, 3, 32, 32)
    x[2, 0, 5, 5] = float('nan')
    return x, torch.eye(10)[:4]


BAD_INPUTS = {
    'empty_batch': (lambda: (torch.randn(0, 3, 32, 32), torch.zeros(0, 10)),
                    ['empty batch']),
    'no_channel_dim': (lambda: (torch.randn(4, 32, 32), torch.eye(10)[:4]),
                       ['(N, C, H, W)', '(4, 32, 32)']),
    'score_rows_mismatch': (lambda: (torch.randn(4, 3, 32, 32),
                                     torch.eye(10)[:3]), ['(3, 10)']),
    'class_indices_not_scores': (lambda: (torch.randn(4, 3, 32, 32),
                                          torch.arange(4)), ['(4,)']),
    'nan_inputs': (_nan_batch, ['NaN', 'samples [2]']),
    # a soft mask cast to an integer type is 0 (FMix, SmoothMix)
    'integer_inputs': (lambda: (torch.randint(
        0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.eye(10)[:4]),
                       ['floating-point', 'torch.uint8']),
}
PATCH_BASED = ('MergeMix', 'AttentiveCutMix', 'SMMix', 'TdAttenMix',
               'TokenMix')
CALL_CASES = [
    case(aug, bad, id=f'{aug}-{bad}') for aug in AUG_CFGS
    for bad in BAD_INPUTS
] + [
    case(aug, bad, id=f'{aug}-{bad}',
         reason=f'upstream mmpretrain {aug} does not validate its input '
         f'({bad}): it mixes, or fails with a raw IndexError/AssertionError')
    for aug in UPSTREAM for bad in ('empty_batch', 'nan_inputs')
]


@pytest.mark.parametrize('aug, bad', CALL_CASES)
def test_augment_rejects_bad_input(aug, bad):
    make, names = BAD_INPUTS[bad]
    x, y = make()
    msg = expect_clear(lambda: bound_augment(aug)(x, y), *names)
    if aug in AUG_CFGS:
        assert aug in msg  # says which augment complained


@pytest.mark.parametrize('aug', PATCH_BASED)
def test_patch_based_augment_rejects_indivisible_size(aug):
    x, y = torch.randn(4, 3, 30, 30), torch.eye(10)[:4]
    expect_clear(lambda: bound_augment(aug)(x, y), '30x30', '8x8')


@pytest.mark.parametrize('aug, kwargs, setting', [
    ('MergeMix', dict(attn_layer=5), 'attn_layer=5'),
    ('MergeMix', dict(merge_num=100), 'merge_num=100'),
    ('TokenMix', dict(attn_layer=5), 'attn_layer=5'),
    ('SMMix', dict(attn_layer=9), 'attn_layer=9'),
    ('MixPro', dict(mask_patch_size=5), 'mask_patch_size=5'),
    ('AttentiveCutMix', dict(grid_size=5), 'grid_size=5'),
    ('GridMix', dict(n_holes=100), 'n_holes'),
])
def test_settings_that_do_not_fit_the_model_or_image(aug, kwargs, setting):
    bound = bound_augment(aug)
    fresh = BATCH_AUGMENTS.build(dict(type=aug, **{**AUG_CFGS[aug],
                                                   **kwargs}))
    if hasattr(bound, '_bound_model'):
        fresh.bind(bound._bound_model)
    expect_clear(lambda: fresh(torch.randn(4, 3, 32, 32),
                               torch.eye(10)[:4]), setting)


@pytest.mark.parametrize('aug', [
    *AUG_CFGS,
    'Mixup',
    'CutMix',
    case('ResizeMix',
         reason='upstream mmpretrain ResizeMix pastes a resized copy of the '
         'image into itself for a batch of 1'),
])
def test_batch_of_one_passes_through_unmixed(aug):
    x = torch.randn(1, 3, 32, 32)
    y = torch.eye(10)[3:4]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        mixed, scores = bound_augment(aug)(x.clone(), y.clone())
    assert torch.allclose(mixed, x, atol=1e-6)
    assert torch.allclose(scores.float(), y)
    record = getattr(bound_augment(aug), 'pop_record', lambda: None)()
    assert record is None  # nothing for the classifier to re-score


# ----------------------------------------------------------------------
# 3. classifier, head, loss, ToMe backbones
TOME = dict(VIT, type='ToMeVisionTransformer')
HEAD = dict(type='MixLabelClsHead', num_classes=10, in_channels=32)


def _clf(**kw):
    return dict(type='MergeMixClassifier', backbone=VIT,
                head=dict(HEAD, loss=dict(type='MixedLabelCrossEntropyLoss')),
                **kw)


MODEL_CASES = [
    case(_clf(aux_loss='cutmix'), "aux_loss='cutmix'"),
    case(_clf(aux_alpha=0), 'aux_alpha=0'),
    case(_clf(tome_in_mix='no'), "tome_in_mix='no'"),
    case(_clf(tome_in_mix=False), 'ToMe backbone'),
    case(_clf(train_cfg='MergeMix'), 'train_cfg'),
    case(_clf(train_cfg=dict(augments=[dict(type='Mixup', alpha=1.)],
                             prob=0.5)), "['prob']"),
    case(_clf(train_cfg=dict(augments=[dict(alpha=1.)])), 'no `type`'),
    case(_clf(train_cfg=dict(augments=[dict(type='NoSuchMix')])),
         'NoSuchMix', id='unknown-augment'),
    case(_clf(train_cfg=dict(augments=[dict(type='Mixup', alpha=1.)],
                             probs=[0.5, 0.5])), 'probs=[0.5, 0.5]'),
    case(dict(HEAD, cal_acc=True), 'cal_acc=True'),
    case(dict(HEAD, num_classes=0), 'num_classes=0'),
    case(dict(HEAD, in_channels='32'), "in_channels='32'"),
    case(dict(type='MixedLabelCrossEntropyLoss', label_smooth_val=1.0),
         'label_smooth_val=1.0'),
    case(dict(type='MixedLabelCrossEntropyLoss', lam_reduction='mean'),
         "lam_reduction='mean'"),
    case(dict(type='MixedLabelCrossEntropyLoss', loss_weight='1'),
         "loss_weight='1'"),
    case(dict(TOME, merge_num=-1), 'merge_num=-1'),
    case(dict(TOME, merge_num=2.5), 'merge_num=2.5'),
    case(dict(TOME, merge_num=100), 'merge_num=100'),
    case(dict(TOME, tome_r=[1, 2, 3]), 'tome_r'),
    case(dict(TOME, merge_num=4, tome_r=2), 'mutually exclusive'),
    case(dict(TOME, merge_num=4, schedule_compat='bogus'),
         "schedule_compat='bogus'"),
    case(dict(TOME, prop_attn='yes'), "prop_attn='yes'"),
    case(dict(TOME, merge_num=4, merge_inflect='x'), "merge_inflect='x'"),
    case(dict(TOME, test_merge_num=-1), 'test_merge_num=-1'),
    case(dict(TOME, img_size=30), 'img_size=30x30'),
    case(dict(type='ToMeTimmViT', model_name='resnet18'),
         "model_name='resnet18'"),
]


@pytest.mark.parametrize('cfg, names', MODEL_CASES)
def test_model_component_rejects_bad_setting(cfg, names):
    exc = CLEAR + (KeyError, ) if 'NoSuchMix' in str(cfg) else CLEAR
    expect_clear(lambda: MODELS.build(cfg), names, exc=exc)


# ----------------------------------------------------------------------
# 4. datasets and image files
DATASET_TYPES = ['CIFAR100Local', 'ImageNetLocal', 'CUBLocal',
                 'StanfordCarsLocal', 'FGVCAircraftLocal', 'TinyImageNet']


@pytest.mark.parametrize('dataset', DATASET_TYPES)
def test_dataset_missing_root_names_it(dataset, tmp_path):
    root = str(tmp_path / 'no_such_dataset')
    expect_clear(lambda: DATASETS.build(dict(type=dataset, data_root=root)),
                 root, exc=(FileNotFoundError, ValueError))


@pytest.mark.parametrize('dataset, missing', [
    ('CUBLocal', 'images.txt'),
    ('ImageNetLocal', 'train'),
    ('CIFAR100Local', 'cifar-100-python'),
])
def test_dataset_missing_annotation_names_the_file(dataset, missing,
                                                   tmp_path):
    expect_clear(
        lambda: DATASETS.build(dict(type=dataset, data_root=str(tmp_path))),
        str(tmp_path), missing, exc=(FileNotFoundError, ValueError))


@pytest.mark.parametrize('dataset', DATASET_TYPES + ['DigitsDataset'])
def test_dataset_bad_split(dataset, tmp_path):
    expect_clear(
        lambda: DATASETS.build(
            dict(type=dataset, data_root=str(tmp_path), split='validation')
            if dataset != 'DigitsDataset' else dict(type=dataset,
                                                    split='validation')),
        "split='validation'")


@pytest.mark.parametrize('img_size', [0, 7, '32'])
def test_digits_bad_img_size(img_size):
    expect_clear(
        lambda: DATASETS.build(dict(type='DigitsDataset', img_size=img_size)),
        f'img_size={img_size!r}')


def test_corrupted_image_is_named(tmp_path):
    """In depth: tests/test_datasets/test_safe_loading.py."""
    from mergemix_mm.datasets.safe_loading import ImageLoadError
    bad = tmp_path / 'n01440764' / 'broken.JPEG'
    bad.parent.mkdir()
    bad.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    load = TRANSFORMS.build(dict(type='SafeLoadImageFromFile'))
    with pytest.raises(ImageLoadError, match='broken.JPEG'):
        load(dict(img_path=str(bad)))


# ----------------------------------------------------------------------
# 5. MLLM settings and data
@pytest.fixture(scope='module')
def mllm_files(tmp_path_factory):
    from PIL import Image
    d = tmp_path_factory.mktemp('mllm')
    (d / 'imgs').mkdir()
    Image.new('RGB', (8, 8)).save(d / 'imgs' / 'ok.png')
    (d / 'imgs' / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    (d / 'bad.json').write_text('[{"id": 1, ')
    (d / 'bad.jsonl').write_text(
        '{"id": 1, "conversations": []}\n{oops}\n')

    def rec(img):
        return {'id': img, 'image': img, 'conversations': [
            {'from': 'human', 'value': '<image>\nWhich digit?'},
            {'from': 'gpt', 'value': '3'}]}

    (d / 'badimg.json').write_text(json.dumps([rec('ok.png'),
                                               rec('bad.png')]))
    (d / 'missimg.json').write_text(json.dumps([rec('missing.png')]))
    return d


@pytest.mark.parametrize('field, value', [
    case('method', 'dpo'),
    case('merge_num', -1),
    case('beta', 0),
    case('loss_combine', 'avg'),
    case('compat', 'openmixup'),
    case('resizemix_max', 1.5),
    case('beta', 'x'),
    case('attn_layer', '2'),
    case('loser_grad', 'no'),
    case('prop_attn', 1),
    case('qwen_saliency_block', 'x'),
    case('resizemix_min', '0.1'),
])
def test_mllm_arguments_reject_bad_field(field, value):
    from mergemix_mm.mllm.config import MergeMixArguments
    expect_clear(lambda: MergeMixArguments(**{field: value}), field)


@pytest.mark.parametrize('name, names', [
    case('none.json', ['none.json'], id='missing-file'),
    case('bad.json', ['bad.json'], id='unreadable-json'),
    case('bad.jsonl', ['bad.jsonl', 'line 2'], id='unreadable-jsonl'),
])
def test_mllm_unreadable_data_file(mllm_files, name, names):
    from mergemix_mm.mllm.data import load_records
    expect_clear(lambda: load_records(str(mllm_files / name)), *names)


def test_mllm_missing_image_file(mllm_files):
    from mergemix_mm.mllm.data import LlavaConversationDataset
    expect_clear(
        lambda: LlavaConversationDataset(
            str(mllm_files / 'missimg.json'),
            image_folder=str(mllm_files / 'imgs')), 'missing.png',
        'sample #0')


def test_mllm_missing_image_folder(mllm_files):
    from mergemix_mm.mllm.data import LlavaConversationDataset
    expect_clear(
        lambda: LlavaConversationDataset(
            str(mllm_files / 'badimg.json'),
            image_folder=str(mllm_files / 'nope')), 'image_folder')


def test_mllm_corrupted_image_named_or_skipped(mllm_files):
    from mergemix_mm.mllm.data import LlavaConversationDataset
    ds = LlavaConversationDataset(
        str(mllm_files / 'badimg.json'), image_folder=str(mllm_files /
                                                          'imgs'))
    expect_clear(lambda: ds[1], 'bad.png', 'sample #1')
    skip = LlavaConversationDataset(
        str(mllm_files / 'badimg.json'),
        image_folder=str(mllm_files / 'imgs'),
        skip_bad_samples=True)
    assert skip[1]['id'] == 'ok.png'  # the next readable sample


def test_mllm_skip_bad_samples_must_be_bool(mllm_files):
    from mergemix_mm.mllm.data import LlavaConversationDataset
    expect_clear(
        lambda: LlavaConversationDataset(
            str(mllm_files / 'badimg.json'),
            image_folder=str(mllm_files / 'imgs'),
            skip_bad_samples='no'), 'skip_bad_samples')


@pytest.mark.parametrize('fn, names', [
    case(lambda m, b, s: m.topk_keep_mask(torch.rand(2, 16), 1.5),
         ['lam=1.5'], id='mask-lam-out-of-range'),
    case(lambda m, b, s: m.topk_keep_mask(torch.rand(2, 16, 1), 0.5),
         ['[B, N]'], id='mask-scores-3d'),
    case(lambda m, b, s: m.upsample_patch_mask(torch.ones(2, 16), (3, 3), 8),
         ['3x3'], id='mask-grid-mismatch'),
    case(lambda m, b, s: m.mix_with_mask(torch.rand(2, 3, 8, 8),
                                         torch.tensor([1, 0]),
                                         torch.ones(2, 1, 4, 4)),
         ['(4, 4)'], id='mask-size-mismatch'),
    case(lambda m, b, s: b.mixup_loser(torch.rand(3, 8, 8),
                                       torch.tensor([1, 0]), 0.5),
         ['[B, C, H, W]'], id='loser-3d-images'),
    case(lambda m, b, s: b.cutmix_loser(torch.rand(2, 3, 8, 8),
                                        torch.tensor([1, 0]), -0.1),
         ['lam=-0.1'], id='loser-lam-negative'),
    case(lambda m, b, s: s.mixed_simpo_loss(torch.zeros(2), torch.zeros(2),
                                            torch.tensor([1, 0]), 0.5),
         ['|y| > 0'], id='simpo-empty-response'),
    case(lambda m, b, s: s.sequence_logps(torch.zeros(2, 5, 7),
                                          torch.zeros(2, 4,
                                                      dtype=torch.long)),
         ['(2, 5, 7)', '(2, 4)'], id='logps-misaligned'),
    case(lambda m, b, s: m.topk_keep_mask(torch.full((2, 16), float('nan')),
                                          0.5),
         ['NaN'], id='mask-nan-scores'),
    case(lambda m, b, s: s.mixed_simpo_loss(torch.zeros(2), torch.zeros(2),
                                            torch.ones(2), 2.0),
         ['lam', '2.0'], id='simpo-lam-out-of-range'),
])
def test_mllm_functions_reject_bad_input(fn, names):
    from mergemix_mm.mllm import baselines, loss, mask
    expect_clear(lambda: fn(mask, baselines, loss), *names)


def test_mllm_batch_of_one_has_no_pairs():
    from mergemix_mm.mllm.mask import grouped_partner
    partner, valid = grouped_partner(['a'])
    assert partner.tolist() == [0] and valid.tolist() == [False]


# ----------------------------------------------------------------------
# 6. tools and engine
def _train_tool():
    spec = importlib.util.spec_from_file_location(
        'mergemix_train_tool_matrix', osp.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEMO = osp.join(ROOT, 'configs', 'demo',
                'vit-tiny_1xb64-mixup_digits-32px.py')


@pytest.mark.parametrize('argv, names', [
    ([osp.join(ROOT, 'configs', 'no_such.py')], ['no_such.py']),
    ([DEMO, '--resume', '/nonexistent/epoch_3.pth'], ['epoch_3.pth']),
    ([DEMO, '--amp'], ['--amp']),
], ids=['missing-config', 'missing-resume-file', 'amp-without-gpu'])
def test_train_tool_names_the_problem(argv, names, monkeypatch):
    if '--amp' in argv and torch.cuda.is_available():
        pytest.skip('--amp is valid with a GPU')
    # tools/train.py sets LOCAL_RANK (as mmpretrain's); keep it out of the
    # environment of later tests (Hugging Face's Trainer reads it).
    monkeypatch.setenv('LOCAL_RANK', '0')
    tool = _train_tool()
    with pytest.raises(SystemExit) as info:
        tool.main(argv)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize('cfg, names', [
    (dict(type='NonFiniteGuardHook', action='warn'), ["action='warn'"]),
    (dict(type='NonFiniteGuardHook', max_skipped=-3), ['max_skipped=-3']),
    (dict(type='RNGStateHook', neutral_validation='yes'),
     ["neutral_validation='yes'"]),
])
def test_engine_hooks_reject_bad_setting(cfg, names):
    expect_clear(lambda: HOOKS.build(cfg), *names)


def test_corrupt_checkpoint_file_is_named(tmp_path):
    from mergemix_mm.utils.checkpoint_safety import (CheckpointCorruptError,
                                                     check_checkpoint)
    path = tmp_path / 'epoch_9.pth'
    path.write_bytes(b'PK\x03\x04 half a checkpoint')
    with pytest.raises(CheckpointCorruptError, match='epoch_9.pth'):
        check_checkpoint(str(path))
