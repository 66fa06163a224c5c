"""ToMeScheduleHook: replacing a ToMe backbone's merge schedule by epoch."""
import logging
from types import SimpleNamespace

import pytest
import torch
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from mmpretrain.registry import HOOKS, MODELS

from mergemix_mm.engine import ToMeScheduleHook
from mergemix_mm.models.tome import resolve_schedule

BACKBONES = {
    'ToMeVisionTransformer':
    dict(arch=dict(embed_dims=48, num_layers=4, num_heads=4,
                   feedforward_channels=96), img_size=32, patch_size=4),
    'ToMeDistilledVisionTransformer':
    dict(arch=dict(embed_dims=48, num_layers=4, num_heads=4,
                   feedforward_channels=96), img_size=32, patch_size=4),
    'ToMeTimmViT':
    dict(model_name='vit_tiny_patch16_224', img_size=32, patch_size=4,
         depth=4),
}


def _runner(backbone, epoch=0, **model_attrs):
    model = SimpleNamespace(backbone=backbone, **model_attrs)
    loop = EpochBasedTrainLoop.__new__(EpochBasedTrainLoop)  # type only
    return SimpleNamespace(model=model, epoch=epoch, train_loop=loop,
                           logger=logging.getLogger('tome_schedule_test'))


def _build(kind='ToMeVisionTransformer', **kwargs):
    return MODELS.build(dict(type=kind, **BACKBONES[kind], **kwargs))


@pytest.mark.parametrize('kind', sorted(BACKBONES))
def test_entries_apply_at_their_epoch(kind):
    backbone = _build(kind, merge_num=16)
    hook = HOOKS.build(dict(type='ToMeScheduleHook', schedule=[
        dict(action_epoch=3, merge_num=0),
        dict(action_epoch=2, tome_r=2, test_merge_num=8),
    ]))
    runner = _runner(backbone)
    hook.before_train(runner)
    start = resolve_schedule(4, 16)
    assert backbone.train_r_list == backbone.test_r_list == start
    seen = []
    for epoch in range(4):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        seen.append((backbone.train_r_list, backbone.test_r_list))
    assert seen == [
        (start, start),  # epoch 1
        ([2, 2, 2, 2], resolve_schedule(4, 8)),  # epoch 2
        ([0] * 4, [0] * 4),  # epoch 3: test follows train (no test_* key)
        ([0] * 4, [0] * 4),
    ]
    backbone.train()
    assert backbone.current_r_list == [0] * 4


def test_resume_applies_the_last_passed_entry():
    backbone = _build(merge_num=16)
    hook = ToMeScheduleHook([dict(action_epoch=2, tome_r=1),
                             dict(action_epoch=4, tome_r=3),
                             dict(action_epoch=6, merge_num=0)])
    runner = _runner(backbone, epoch=4)  # resumed after 4 finished epochs
    hook.before_train(runner)
    assert backbone.train_r_list == [3] * 4
    hook.before_train_epoch(runner)  # epoch 5: no entry
    assert backbone.train_r_list == [3] * 4
    runner.epoch = 5
    hook.before_train_epoch(runner)
    assert backbone.train_r_list == [0] * 4


def test_every_entry_is_checked_before_training():
    """A schedule that does not fit fails at start-up, naming the entry and
    the setting, with the backbone unchanged."""
    backbone = _build(merge_num=16)
    hook = ToMeScheduleHook([dict(action_epoch=2, merge_num=8),
                             dict(action_epoch=50, merge_num=1000)])
    with pytest.raises(ValueError,
                       match=r'action_epoch=50: .*merge_num=1000'):
        hook.before_train(_runner(backbone))
    assert backbone.train_r_list == resolve_schedule(4, 16)
    with pytest.raises(ValueError, match='test_tome_r'):
        backbone.set_merge_schedule(merge_num=8, test_tome_r=[100])
    assert backbone.train_r_list == resolve_schedule(4, 16)


def test_the_merging_switch_in_force_is_kept():
    backbone = _build(merge_num=16).train()
    with backbone.merging(False):
        backbone.set_merge_schedule(tome_r=2)
        assert backbone.current_r_list == [0] * 4
    assert backbone.current_r_list == [2] * 4


def test_a_backbone_without_merging_is_named():
    stock = MODELS.build(dict(type='VisionTransformer',
                              **BACKBONES['ToMeVisionTransformer']))
    hook = ToMeScheduleHook([dict(action_epoch=1, merge_num=0)])
    with pytest.raises(ValueError, match='got VisionTransformer'):
        hook.before_train(_runner(stock))


@pytest.mark.parametrize('schedule,match', [
    ([], 'non-empty list'),
    (dict(action_epoch=1, merge_num=0), 'non-empty list'),
    ([dict(merge_num=0)], 'action_epoch=None'),
    ([dict(action_epoch=0, merge_num=0)], 'action_epoch=0'),
    ([dict(action_epoch=True, merge_num=0)], 'action_epoch=True'),
    ([dict(action_epoch=2, merge_num=0),
      dict(action_epoch=2, tome_r=1)], 'repeated'),
    ([dict(action_epoch=2)], 'must set merge_num or tome_r'),
    # merge_num would default to 0 and silently stop the training's merging
    ([dict(action_epoch=2, test_merge_num=0)], 'must set merge_num or'),
    ([dict(action_epoch=2, merge_num=4, prop_attn=True)], "'prop_attn'"),
    ([5], 'every schedule entry must be a dict'),
])
def test_bad_schedules_are_named(schedule, match):
    with pytest.raises(ValueError, match=match):
        ToMeScheduleHook(schedule)


def test_unused_schedules_are_refused():
    """With tome_in_mix=True the classifying forwards never merge, and an
    iteration-based loop never reaches a later epoch: no silent no-op."""
    hook = ToMeScheduleHook([dict(action_epoch=2, merge_num=0)])
    with pytest.raises(ValueError, match='tome_in_mix=True'):
        hook.before_train(_runner(_build(merge_num=16), tome_in_mix=True))
    hook.before_train(_runner(_build(merge_num=16), tome_in_mix=False))
    runner = _runner(_build(merge_num=16))
    runner.train_loop = IterBasedTrainLoop.__new__(IterBasedTrainLoop)
    with pytest.raises(ValueError, match='IterBasedTrainLoop'):
        hook.before_train(runner)


def test_evaluation_uses_the_checkpoints_epoch():
    """tools/test.py on a checkpoint saved after epoch 5 evaluates with the
    entry of epoch 4, as the training's validation did."""
    hook = ToMeScheduleHook([dict(action_epoch=4, tome_r=1),
                             dict(action_epoch=6, merge_num=0)])
    backbone = _build(merge_num=16)
    runner = _runner(backbone)
    hook.before_test(runner)  # no checkpoint: the built schedule
    assert backbone.test_r_list == resolve_schedule(4, 16)
    hook.after_load_checkpoint(runner, dict(meta=dict(epoch=5)))
    hook.before_test(runner)
    assert backbone.test_r_list == [1] * 4
    hook.after_load_checkpoint(runner, dict(meta=dict(epoch=3)))
    other = _build(merge_num=16)
    hook.before_test(_runner(other))
    assert other.test_r_list == resolve_schedule(4, 16)


def test_config_dicts_are_not_changed():
    schedule = [dict(action_epoch=2, merge_num=0)]
    ToMeScheduleHook(schedule)
    assert schedule == [dict(action_epoch=2, merge_num=0)]


def test_training_with_the_hook_changes_the_merged_forward(
        tmp_path, short_demo_cfg):
    """Through mmengine's Runner: the classifying forward merges 16 tokens
    in epoch 1 and none from epoch 2, on a ToMe digits model."""
    import os.path as osp

    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner
    root = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
    cfg = short_demo_cfg(tmp_path, max_epochs=2, indices=8)
    cfg.model.backbone.type = 'ToMeVisionTransformer'
    cfg.model.backbone.merge_num = 16
    cfg.model.tome_in_mix = False  # the classifying forwards merge
    cfg.custom_hooks = [dict(type='ToMeScheduleHook',
                             schedule=[dict(action_epoch=2, merge_num=0)])]
    tokens = []

    class Record(Hook):

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            backbone = runner.model.backbone
            tokens.append((runner.epoch, sum(backbone.current_r_list)))

    runner = Runner.from_cfg(cfg)
    runner.register_hook(Record(), priority='LOWEST')
    runner.train()
    assert sorted(set(tokens)) == [(0, 16), (1, 0)]
    assert torch.isfinite(
        torch.tensor(runner.message_hub.get_scalar('train/loss').current()))

    # evaluating the epoch-2 checkpoint (as tools/test.py does) merges as
    # epoch 2 trained: not at all
    test_cfg = Config.fromfile(osp.join(
        root, 'configs', 'demo', 'vit-tiny_1xb64-mergemix_digits-32px.py'))
    test_cfg.model = cfg.model
    test_cfg.custom_hooks = cfg.custom_hooks
    test_cfg.test_dataloader.dataset.indices = 8
    test_cfg.test_dataloader.num_workers = 0
    test_cfg.test_dataloader.persistent_workers = False
    test_cfg.load_from = str(tmp_path / 'epoch_2.pth')
    test_cfg.work_dir = str(tmp_path / 'test')
    merged = []

    class RecordTest(Hook):

        def before_test_iter(self, runner, batch_idx, data_batch=None):
            backbone = runner.model.backbone
            merged.append(sum(backbone.eval().current_r_list))

    tester = Runner.from_cfg(test_cfg)
    assert sum(tester.model.backbone.test_r_list) == 16  # as built
    tester.register_hook(RecordTest(), priority='LOWEST')
    tester.test()
    assert merged and set(merged) == {0}


def test_resume_follows_the_epochs_not_the_order_given():
    """Entries listed out of order: on resume the latest passed epoch
    wins, not the last one listed."""
    backbone = _build(merge_num=16)
    hook = ToMeScheduleHook([dict(action_epoch=4, tome_r=3),
                             dict(action_epoch=2, tome_r=1)])
    hook.before_train(_runner(backbone, epoch=5))
    assert backbone.train_r_list == [3] * 4
    other = _build(merge_num=16)
    hook.after_load_checkpoint(None, dict(meta=dict(epoch=6)))
    hook.before_test(_runner(other))
    assert other.test_r_list == [3] * 4


def test_a_wrapped_model_is_unwrapped():
    """Under a model wrapper (DataParallel here, DDP in a distributed run)
    the hook reaches the backbone and the wrapped model's tome_in_mix."""
    backbone = _build(merge_num=16)
    model = torch.nn.Module()
    model.backbone = backbone
    runner = _runner(backbone)
    runner.model = torch.nn.DataParallel(model)
    hook = ToMeScheduleHook([dict(action_epoch=1, merge_num=0)])
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    assert backbone.train_r_list == [0] * 4
    model.tome_in_mix = True
    with pytest.raises(ValueError, match='tome_in_mix=True'):
        hook.before_train(runner)


def test_errors_at_another_image_size_name_the_schedule_in_force():
    """After set_merge_schedule, a too-small input names the new setting
    (not the constructor's)."""
    backbone = _build(merge_num=16).train()
    backbone.set_merge_schedule(tome_r=4)
    with pytest.raises(ValueError, match=r'tome_r=4 \(a schedule for'):
        backbone(torch.rand(1, 3, 16, 16))


def test_the_hook_keeps_its_own_copy_of_the_schedule():
    """A config's list changed after the hook was built (e.g. a later
    merge_from_dict) does not change the hook's schedule."""
    tome_r = [2, 2, 2, 2]
    hook = ToMeScheduleHook([dict(action_epoch=1, tome_r=tome_r)])
    tome_r[:] = [0, 0, 0, 0]
    backbone = _build(merge_num=16)
    runner = _runner(backbone)
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    assert backbone.train_r_list == [2] * 4


def test_a_featmap_backbone_refuses_merging_entries_up_front():
    """out_type='featmap' needs every patch: the constructor refuses a
    merging schedule, and so do check_merge_schedule, set_merge_schedule and
    therefore the hook before the first epoch (not at the first merged
    forward, epochs later)."""
    backbone = _build(out_type='featmap')
    with pytest.raises(ValueError, match='featmap'):
        backbone.check_merge_schedule(merge_num=8)
    with pytest.raises(ValueError, match='featmap'):
        backbone.set_merge_schedule(test_merge_num=8)
    assert backbone.train_r_list == backbone.test_r_list == [0] * 4
    hook = ToMeScheduleHook([dict(action_epoch=2, merge_num=8)])
    with pytest.raises(ValueError, match=r"action_epoch=2: .*featmap"):
        hook.before_train(_runner(backbone))
    # merging off stays possible
    assert backbone.check_merge_schedule(merge_num=0) == ([0] * 4, [0] * 4)


def test_check_merge_schedule_returns_the_schedules_without_applying():
    backbone = _build(merge_num=16)
    assert backbone.check_merge_schedule(tome_r=2, test_merge_num=8) == (
        [2, 2, 2, 2], resolve_schedule(4, 8))
    assert backbone.train_r_list == backbone.test_r_list == resolve_schedule(
        4, 16)
