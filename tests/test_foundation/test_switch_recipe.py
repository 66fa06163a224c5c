"""SwitchRecipeHook with MergeMix: switches bind the new augments, and a
switch holds across a kill + --resume."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
DEMO = osp.join(ROOT, 'configs', 'demo',
                'vit-tiny_1xb64-mergemix_digits-32px.py')
MIXUP = osp.join(ROOT, 'configs', 'demo',
                 'vit-tiny_1xb64-mixup_digits-32px.py')


def _write_cfg(tmp_path, base, schedule, epochs):
    # 128 training digits (2 iterations per epoch) keep the runs short.
    cfg = tmp_path / 'switch.py'
    cfg.write_text(
        f'_base_ = [{base!r}]\n'
        'train_dataloader = dict(dataset=dict(indices=128))\n'
        'val_dataloader = dict(dataset=dict(indices=128))\n'
        'custom_hooks = '
        f'[dict(type="SwitchRecipeHook", schedule={schedule})]\n'
        f'train_cfg = dict(max_epochs={epochs}, val_interval={epochs})\n'
        'default_hooks = dict(logger=dict(interval=5))\n')
    return str(cfg)


def test_switch_to_mergemix_binds_the_new_augment(tmp_path, monkeypatch):
    # tools/train.py sets LOCAL_RANK like mmpretrain's; keep it out of
    # the other tests' environment.
    monkeypatch.setenv('LOCAL_RANK', '0')
    from tools.train import main
    schedule = ("[dict(action_epoch=1, batch_augments=dict(augments=["
                "dict(type='MergeMix', attn_layer=2, merge_num=32)]))]")
    cfg = _write_cfg(tmp_path, MIXUP, schedule, 2)
    runner = main([cfg, '--work-dir', str(tmp_path / 'w')])
    aug = runner.model.data_preprocessor.batch_augments.augments[0]
    assert type(aug).__name__ == 'MergeMix'
    assert aug.model is runner.model
    assert runner.iter == 2 * 2


def test_mixing_off_holds_after_kill_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')
    schedule = '[dict(action_epoch=2, batch_augments=None)]'
    cfg = _write_cfg(tmp_path, DEMO, schedule, 8)
    work = tmp_path / 'w'
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.Popen(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'), cfg,
         '--work-dir', str(work)], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    ckpt = work / 'epoch_2.pth'
    deadline = time.time() + 600
    while not ckpt.exists() and time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail('training stopped before epoch 2')
        time.sleep(0.2)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / 'epoch_8.pth').exists()

    from tools.train import main
    runner = main([cfg, '--work-dir', str(work), '--resume'])
    assert runner.epoch == 8
    # Mixing stayed off after the resume (the hook re-applied the switch).
    assert runner.model.data_preprocessor.batch_augments is None
    logs = ''.join(open(p).read() for p in work.glob('*/*.log'))
    assert 'resume recipe of epoch 2' in logs


def _digits_augments():
    """(name, augment cfg) of every digits config: each baseline and
    MergeMix."""
    import glob

    from mmengine.config import Config
    paths = sorted(
        glob.glob(osp.join(ROOT, 'configs', 'baselines', 'digits', '*.py')))
    paths.append(DEMO)
    out = []
    for path in paths:
        augs = Config.fromfile(path).model.train_cfg.augments
        for aug in augs:
            out.append(pytest.param(aug.to_dict(), id=aug['type']))
    return out


@pytest.mark.parametrize('aug', _digits_augments())
def test_every_augment_switches_in_and_trains(aug):
    """SwitchRecipeHook can switch to MergeMix and to every baseline: the
    switched-in augment is bound to the model (model-aware ones) and a
    training step with it runs and updates the weights."""
    import copy

    import torch
    from mmengine.config import Config
    from mmengine.optim import OptimWrapper
    from mmengine.registry import init_default_scope
    from mmpretrain.engine.hooks import SwitchRecipeHook
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    import mergemix_mm  # noqa: F401
    from mergemix_mm.models.batch_augments.base import ModelAwareMixin
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(MIXUP)
    model_cfg = copy.deepcopy(cfg.model)
    # as mmengine's Runner does with a top-level data_preprocessor
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    hook = SwitchRecipeHook(
        schedule=[dict(action_epoch=1, batch_augments=dict(augments=[aug]))])

    class _Runner:
        pass

    runner = _Runner()
    runner.model = model
    hook._switch_batch_augments(runner, hook.schedule[1]['batch_augments'])
    switched = model.data_preprocessor.batch_augments.augments[0]
    assert type(switched).__name__ == aug['type']
    if isinstance(switched, ModelAwareMixin):
        assert switched.model is model
    g = torch.Generator().manual_seed(0)
    data = dict(
        inputs=[torch.randint(0, 256, (3, 32, 32), generator=g,
                              dtype=torch.uint8) for _ in range(8)],
        data_samples=[DataSample().set_gt_label(i % 10) for i in range(8)])
    before = [p.detach().clone() for p in model.parameters()]
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    model.train()
    losses = model.train_step(data, optim)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert any(not torch.equal(b, p)
               for b, p in zip(before, model.parameters()))


def test_patching_twice_wraps_the_hook_once():
    from mmpretrain.engine.hooks import SwitchRecipeHook

    from mergemix_mm.engine.switch_recipe import patch_switch_recipe_hook
    patched = SwitchRecipeHook._switch_batch_augments
    init = SwitchRecipeHook.__init__
    assert patched._binds_augments is True
    assert init._normalizes_augments is True
    patch_switch_recipe_hook()
    patch_switch_recipe_hook()
    assert SwitchRecipeHook._switch_batch_augments is patched
    assert SwitchRecipeHook.__init__ is init


@pytest.mark.parametrize('batch_augments, types', [
    (dict(augments=[dict(type='Mixup', alpha=1)]), ['Mixup']),  # int alpha
    (dict(type='CutMix', alpha=1.0), ['CutMix']),  # one-augment shorthand
    ([dict(type='Mixup', alpha=0.8), dict(type='MergeMix')],
     ['Mixup', 'MergeMix']),
    (dict(augments=[]), None),  # no augment: mixing off
    (None, None),
])
def test_schedule_takes_the_classifier_shorthands(batch_augments, types):
    """The schedule's batch augments are normalised like the classifier's
    train_cfg (mmpretrain asserted on alpha=1 and on the shorthands); the
    user's schedule is not modified."""
    import copy

    from mmpretrain.engine.hooks import SwitchRecipeHook
    schedule = [dict(action_epoch=2, batch_augments=batch_augments)]
    original = copy.deepcopy(schedule)
    built = SwitchRecipeHook(schedule).schedule[2]['batch_augments']
    assert schedule == original
    if types is None:
        assert built is None
    else:
        assert [type(a).__name__ for a in built.augments] == types


def test_schedule_names_a_bad_alpha():
    from mmpretrain.engine.hooks import SwitchRecipeHook
    with pytest.raises(ValueError, match='Mixup: alpha=0.0'):
        SwitchRecipeHook([dict(action_epoch=2, batch_augments=dict(
            augments=[dict(type='Mixup', alpha=0.0)]))])


@pytest.mark.parametrize('classifier', ['ImageClassifier',
                                        'MergeMixClassifier'])
def test_switch_binds_as_the_classifier_does_at_build(classifier):
    """A switch applies the build-time policy of the classifier: under a
    plain ImageClassifier MergeMix is bound without records and TransMix
    (which re-scores labels from the training forward) is refused, naming
    the model type; MergeMixClassifier keeps records for both."""
    import copy

    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.engine.hooks import SwitchRecipeHook
    from mmpretrain.registry import MODELS

    import mergemix_mm  # noqa: F401
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(MIXUP)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model_cfg['type'] = classifier
    model = MODELS.build(model_cfg)
    hook = SwitchRecipeHook(schedule=[
        dict(action_epoch=1, batch_augments=dict(type='MergeMix',
                                                 attn_layer=2)),
        dict(action_epoch=2, batch_augments=dict(type='TransMix',
                                                 attn_layer=2)),
    ])

    class _Runner:
        pass

    runner = _Runner()
    runner.model = model
    plain = classifier == 'ImageClassifier'
    hook._switch_batch_augments(runner, hook.schedule[1]['batch_augments'])
    mergemix = model.data_preprocessor.batch_augments.augments[0]
    assert mergemix.model is model
    assert mergemix.keep_records is not plain
    if plain:
        with pytest.raises(ValueError, match="TransMix re-scores labels.*"
                           "needs model type='MergeMixClassifier'"):
            hook._switch_batch_augments(
                runner, hook.schedule[2]['batch_augments'])
    else:
        hook._switch_batch_augments(runner,
                                    hook.schedule[2]['batch_augments'])
        transmix = model.data_preprocessor.batch_augments.augments[0]
        assert transmix.model is model and transmix.keep_records


@pytest.mark.parametrize('loop, epochs, error', [
    ('IterBasedTrainLoop', [2], True),
    ('IterBasedTrainLoop', [1], False),
    ('EpochBasedTrainLoop', [1, 3], False),
])
def test_iteration_loop_refuses_unreachable_switches(loop, epochs, error):
    """An iteration-based loop runs as one epoch: a switch at a later epoch
    would never happen, so it is refused before training (mmpretrain's hook
    ignored it without a word)."""
    from mmengine import runner as mm_runner
    from mmpretrain.engine.hooks import SwitchRecipeHook

    import mergemix_mm  # noqa: F401
    hook = SwitchRecipeHook(schedule=[
        dict(action_epoch=e, batch_augments=None) for e in epochs])
    cls = getattr(mm_runner, loop)

    class _Runner:
        _resume = False
        train_loop = cls.__new__(cls)

    if error:
        with pytest.raises(ValueError, match='action_epoch=2 can never be '
                           'reached in an iteration-based'):
            hook.before_train(_Runner())
    else:
        hook.before_train(_Runner())
