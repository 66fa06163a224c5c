"""Numerical guards (issue 10, item 4): a non-finite loss or input stops
training naming the iteration and samples (or skips the step when configured),
attention-derived masks are never NaN, autocast keeps the loss in fp32."""
import copy
import os
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmpretrain.registry import HOOKS, MODELS
from mmpretrain.structures import DataSample
from toy_runner import (PoisonAtIterHook, ToyDataset, build_toy_runner,
                        weights)

from mergemix_mm.engine import NonFiniteError, NonFiniteGuardHook

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


class WeightsLog(Hook):
    """Weights after every iteration (1-based)."""

    def __init__(self):
        self.after = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.after[runner.iter + 1] = weights(runner)


def _finite(w):
    return all(bool(torch.isfinite(v).all()) for v in w.values())


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------
# the hook in a real training loop (toy runner, in-process)
def test_nan_loss_stops_naming_iteration_and_samples(tmp_path):
    log = WeightsLog()
    runner = build_toy_runner(
        str(tmp_path), max_epochs=2, val=False,
        custom_hooks=[PoisonAtIterHook([4]), log])
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    err = info.value
    msg = str(err)
    assert 'Non-finite loss' in msg and 'iteration 4 (epoch 1)' in msg
    assert err.iteration == 4
    assert len(err.sample_idx) == 4 and len(set(err.sample_idx)) == 4
    assert f'sample_idx={err.sample_idx}' in msg
    assert all(0 <= i < 24 for i in err.sample_idx)
    # stopped before the optimizer step: weights are those after iter 3
    assert _finite(weights(runner)) and _same(weights(runner), log.after[3])


def test_guard_reports_the_batch_that_was_trained(tmp_path):
    """The reported indices are the samples of the poisoned batch."""

    class Batches(Hook):
        seen = {}

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self.seen[runner.iter + 1] = [
                ds.metainfo['sample_idx'] for ds in data_batch['data_samples']
            ]

    batches = Batches()
    runner = build_toy_runner(
        str(tmp_path), max_epochs=2, val=False,
        custom_hooks=[PoisonAtIterHook([9]), batches])
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    assert info.value.sample_idx == batches.seen[9]


def test_without_guard_nan_reaches_the_weights(tmp_path):
    """What the guard prevents (the test above fails without it)."""
    runner = build_toy_runner(
        str(tmp_path), max_epochs=1, val=False,
        guard=dict(enable=False), custom_hooks=[PoisonAtIterHook([4])])
    runner.train()
    assert not _finite(weights(runner))


def test_skip_mode_skips_exactly_the_bad_steps(tmp_path):
    log = WeightsLog()
    runner = build_toy_runner(
        str(tmp_path), max_epochs=2, val=False,
        guard=dict(action='skip'),
        custom_hooks=[PoisonAtIterHook([3, 8]), log])
    runner.train()
    assert runner.iter == 12 and runner.epoch == 2  # the run finished
    guard = [h for h in runner.hooks if isinstance(h, NonFiniteGuardHook)][0]
    assert guard.num_skipped == 2
    assert _finite(weights(runner))
    assert _same(log.after[3], log.after[2])  # no update at the bad steps
    assert _same(log.after[8], log.after[7])
    assert not _same(log.after[4], log.after[3])  # training goes on
    text = '\n'.join(
        open(osp.join(r, f)).read() for r, _, fs in os.walk(tmp_path)
        for f in fs if f.endswith('.log'))
    skipped = [ln for ln in text.splitlines() if 'Skipped training step' in ln]
    assert len(skipped) == 2
    assert 'iteration 3' in skipped[0] and '1 step(s) skipped' in skipped[0]
    assert 'iteration 8' in skipped[1] and '2 step(s) skipped' in skipped[1]


def test_skip_mode_stops_a_diverged_run(tmp_path):
    runner = build_toy_runner(
        str(tmp_path), max_epochs=2, val=False,
        guard=dict(action='skip', max_consecutive_skips=2),
        custom_hooks=[PoisonAtIterHook(range(2, 20))])
    with pytest.raises(NonFiniteError, match='max_consecutive_skips=2'):
        runner.train()
    assert runner.iter == 3  # iterations 2, 3 skipped; 4 raised


def test_skip_mode_total_limit(tmp_path):
    runner = build_toy_runner(
        str(tmp_path), max_epochs=2, val=False,
        guard=dict(action='skip', max_skipped=1),
        custom_hooks=[PoisonAtIterHook([2, 5])])
    with pytest.raises(NonFiniteError, match='max_skipped=1'):
        runner.train()


@pytest.mark.parametrize('action', ['raise', 'skip'])
def test_nan_input_names_the_sample(tmp_path, action):
    runner = build_toy_runner(
        str(tmp_path), max_epochs=1, val=False,
        dataset=ToyDataset(nan_at=13), guard=dict(action=action))
    if action == 'raise':
        with pytest.raises(NonFiniteError) as info:
            runner.train()
        msg = str(info.value)
        assert 'Non-finite inputs' in msg and 13 in info.value.sample_idx
        pos = info.value.sample_idx.index(13)
        assert f'batch positions [{pos}]' in msg
    else:
        runner.train()
        guard = [h for h in runner.hooks
                 if isinstance(h, NonFiniteGuardHook)][0]
        assert guard.num_skipped == 1 and _finite(weights(runner))


@pytest.mark.parametrize('kwargs, match', [
    (dict(action='ignore'), "action='ignore'"),
    (dict(check_inputs='yes'), "check_inputs='yes'"),
    (dict(max_skipped=-1), 'max_skipped=-1'),
    (dict(max_consecutive_skips=2.5), 'max_consecutive_skips=2.5'),
    (dict(enable=1), 'enable=1'),
])
def test_guard_rejects_bad_settings(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        NonFiniteGuardHook(**kwargs)


def test_default_runtime_registers_the_hooks():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'demo',
                 'vit-tiny_1xb64-mergemix_digits-32px.py'))
    hooks = cfg.default_hooks
    guard = HOOKS.build(copy.deepcopy(hooks['nonfinite_guard']))
    assert isinstance(guard, NonFiniteGuardHook) and guard.action == 'raise'
    assert type(HOOKS.build(copy.deepcopy(
        hooks['rng_state']))).__name__ == 'RNGStateHook'


# ----------------------------------------------------------------------
# MergeMixClassifier: sequential main + auxiliary backward
def _classifier(tiny_vit_cfg, aux_loss='mixup'):
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='MergeMixClassifier',
            backbone=tiny_vit_cfg,
            head=dict(
                type='MixLabelClsHead', num_classes=10, in_channels=32,
                loss=dict(type='MixedLabelCrossEntropyLoss')),
            data_preprocessor=dict(
                num_classes=10, mean=[127.5] * 3, std=[127.5] * 3,
                to_rgb=False),
            train_cfg=dict(augments=[
                dict(type='MergeMix', alpha=1.0, attn_layer=1, merge_num=4)
            ]),
            aux_loss=aux_loss))


def _batch(n=4):
    g = torch.Generator().manual_seed(1)
    inputs = [torch.randint(0, 256, (3, 32, 32), generator=g,
                            dtype=torch.uint8) for _ in range(n)]
    samples = [
        DataSample(metainfo=dict(sample_idx=100 + i)).set_gt_label(i % 10)
        for i in range(n)
    ]
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('poisoned', ['main', 'aux'])
@pytest.mark.parametrize('action', ['raise', 'skip'])
def test_nan_in_either_loss_blocks_the_whole_step(tiny_vit_cfg, action,
                                                  poisoned):
    model = _classifier(tiny_vit_cfg)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    calls = {'n': 0}
    bad_call = 1 if poisoned == 'main' else 2

    def poison(module, args, output):
        calls['n'] += 1
        return output * float('nan') if calls['n'] == bad_call else output

    model.head.register_forward_hook(poison)
    before = copy.deepcopy(model.state_dict())
    guard = NonFiniteGuardHook(action=action)
    runner = SimpleNamespace(model=model, iter=41, epoch=2)
    guard.before_train(runner)
    if action == 'raise':
        with pytest.raises(NonFiniteError, match='iteration 42 .epoch 3.'):
            model.train_step(_batch(), optim)
    else:
        assert model.train_step(_batch(), optim) == {}
        assert guard.num_skipped == 1
    assert calls['n'] == 2  # main and auxiliary loss were computed
    assert optim._inner_count == 1  # one iteration, as after a clean step
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None or not p.grad.any()
               for p in model.parameters())
    guard.after_train(runner)
    assert 'train_step' not in model.__dict__
    # the optimizer wrapper is left as it was
    assert 'step' not in optim.__dict__ and 'backward' not in optim.__dict__
    model.train_step(_batch(), optim)  # a clean step works afterwards


class _SqrtModel(torch.nn.Module):
    """Finite loss, infinite gradient: d sqrt(|w|) / dw at w = 0."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.0, 1.0]))
        self.v = torch.nn.Parameter(torch.tensor([2.0]))

    def train_step(self, data, optim_wrapper):
        loss = torch.sqrt(self.w.abs()).sum() + self.v.square().sum()
        optim_wrapper.update_params(loss)
        return dict(loss=loss.detach())


@pytest.mark.parametrize('action', ['raise', 'skip'])
def test_non_finite_gradient_of_a_finite_loss_is_caught(action):
    """Before the optimizer step (and before gradient clipping, which would
    spread the NaN to every gradient) the gradients are checked too."""
    model = _SqrtModel()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1),
                         clip_grad=dict(max_norm=5.0))
    before = copy.deepcopy(model.state_dict())
    guard = NonFiniteGuardHook(action=action)
    runner = SimpleNamespace(model=model, iter=6, epoch=0)
    guard.before_train(runner)
    data = dict(inputs=torch.zeros(2))
    if action == 'raise':
        with pytest.raises(NonFiniteError) as info:
            model.train_step(data, optim)
        msg = str(info.value)
        assert 'Non-finite gradients (of w;' in msg
        assert 'iteration 7' in msg and 'the loss was finite' in msg
    else:
        assert model.train_step(data, optim) == {}
        assert guard.num_skipped == 1
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert optim._inner_count == 1
    # a step with finite gradients goes through
    with torch.no_grad():
        model.w.fill_(1.0)
    model.train_step(data, optim)
    assert torch.isfinite(model.w).all() and model.v.item() < 2.0


# ----------------------------------------------------------------------
# autocast keeps the loss in fp32
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('aux_loss', [None, 'mixup'])
def test_autocast_loss_is_fp32(tiny_vit_cfg, dtype, aux_loss):
    model = _classifier(tiny_vit_cfg, aux_loss=aux_loss)
    data = model.data_preprocessor(_batch(), True)
    with torch.autocast('cpu', dtype=dtype):
        losses = model.loss(data['inputs'], data['data_samples'])
    assert losses
    for name, value in losses.items():
        assert value.dtype == torch.float32, (name, value.dtype)
        assert torch.isfinite(value).all()


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_mllm_losses_are_fp32_from_low_precision_logits(dtype):
    from mergemix_mm.mllm.loss import (mixed_simpo_loss, response_logps,
                                       sequence_logps)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 11, generator=g).to(dtype)
    labels = torch.tensor([[-100, -100, 3, 4, 5, -100],
                           [-100, 1, 2, 3, -100, -100]])
    logp, num = sequence_logps(logits, labels)
    assert logp.dtype == torch.float32 and torch.isfinite(logp).all()
    head = torch.nn.Linear(5, 11).to(dtype)
    hidden = torch.randn(2, 6, 5, generator=g).to(dtype)
    with torch.autocast('cpu', dtype=dtype):
        logp2, _ = response_logps(hidden, labels, head)
        loss = mixed_simpo_loss(logp2, logp2 - 1, num, lam=0.3)
    assert logp2.dtype == torch.float32 and loss.dtype == torch.float32


# ----------------------------------------------------------------------
# attention-derived masks never contain NaN
def _bound_mergemix(tiny_vit_cfg, **kwargs):
    model = _classifier(tiny_vit_cfg, aux_loss=None)
    aug = model.model_aware_augments[0]
    for k, v in kwargs.items():
        setattr(aug, k, v)
    return model, aug


@pytest.mark.parametrize('case', ['uniform_attention', 'huge_inputs',
                                  'bf16_autocast', 'constant_images'])
def test_mergemix_masks_are_finite_and_binary(tiny_vit_cfg, case):
    model, aug = _bound_mergemix(tiny_vit_cfg)
    x = torch.randn(6, 3, 32, 32)
    if case == 'uniform_attention':
        for name, p in model.backbone.named_parameters():
            if 'attn.qkv' in name:  # q = k = 0: every attention row uniform
                torch.nn.init.zeros_(p)
    elif case == 'huge_inputs':
        x = x * 1e4
    elif case == 'constant_images':
        x = torch.ones_like(x)
    ctx = torch.autocast('cpu', dtype=torch.bfloat16) \
        if case == 'bf16_autocast' else torch.enable_grad()
    with ctx:
        mix = aug.build_mix(x)
    assert not mix['linear']  # lam_margin is off by default
    mask = mix['mask']
    assert torch.isfinite(mask).all()
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.isfinite(mix['lam']).all()
    assert ((mix['lam'] >= 0) & (mix['lam'] <= 1)).all()
    k = torch.floor(mix['lam_draw'] * 16)
    assert torch.equal(mix['patch_mask'].flatten(1).sum(1), k)


def test_mergemix_refuses_non_finite_attention(tiny_vit_cfg):
    model, aug = _bound_mergemix(tiny_vit_cfg)
    with torch.no_grad():
        model.backbone.layers[0].attn.qkv.weight[0, 0] = float('nan')
    with pytest.raises(RuntimeError, match='not finite'):
        aug.build_mix(torch.randn(4, 3, 32, 32))


ATTENTION_AUGMENTS = {
    'TransMix': {},
    'TokenMix': {},
    'SMMix': {},
    'TdAttenMix': {},
    'MixPro': dict(mask_patch_size=8),
    'AttentiveCutMix': dict(grid_size=4),
}


@pytest.mark.parametrize('case', ['uniform_attention', 'huge_inputs'])
@pytest.mark.parametrize('name', sorted(ATTENTION_AUGMENTS))
def test_attention_based_augments_stay_finite(tiny_vit_cfg, name, case):
    """Saturated or uniform attention never turns into NaN masks, labels or
    losses (including TransMix/MixPro re-scoring in the training forward)."""
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='MergeMixClassifier',
            backbone=tiny_vit_cfg,
            head=dict(type='MixLabelClsHead', num_classes=10,
                      in_channels=32),
            data_preprocessor=dict(num_classes=10, mean=[0.] * 3,
                                   std=[1.] * 3, to_rgb=False),
            train_cfg=dict(augments=[dict(type=name,
                                          **ATTENTION_AUGMENTS[name])])))
    if case == 'uniform_attention':
        for pname, p in model.named_parameters():
            if 'attn.qkv' in pname:
                torch.nn.init.zeros_(p)
    scale = 1e4 if case == 'huge_inputs' else 1.0
    inputs = torch.randn(4, 3, 32, 32) * scale
    scores = torch.eye(10)[:4]
    aug = model.data_preprocessor.batch_augments.augments[0]
    mixed, mixed_scores = aug(inputs, scores)
    assert torch.isfinite(mixed).all() and torch.isfinite(mixed_scores).all()
    assert torch.allclose(mixed_scores.sum(1), torch.ones(4), atol=1e-5)
    samples = [DataSample().set_gt_label(i).set_gt_score(s)
               for i, s in enumerate(mixed_scores)]
    losses = model.loss(mixed, samples)
    assert all(torch.isfinite(v).all() for v in losses.values()), losses


def _accumulated_run(kind):
    """Six iterations with gradient accumulation 2 and one bad batch (NaN
    input or NaN loss) at iteration 2, skipped; the iterations whose
    optimizer step ran, the wrapper's count and the final weights."""
    from mmengine.model import BaseModel

    class Linear(BaseModel):

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))

        def forward(self, inputs, nan_loss=False, mode='loss'):
            loss = (self.w * inputs).sum()
            return dict(loss=loss * float('nan') if nan_loss else loss)

    model = Linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps, step = [], optimizer.step
    optimizer.step = lambda *a, **k: (steps.append(runner.iter + 1),
                                      step(*a, **k))[1]
    wrapper = OptimWrapper(optimizer, accumulative_counts=2)
    wrapper.initialize_count_status(model, 0, 6)
    hook = NonFiniteGuardHook(action='skip')
    runner = SimpleNamespace(model=model, iter=0, epoch=0, train_loop=None)
    hook.before_train(runner)
    for i in range(6):
        runner.iter = i
        data = dict(inputs=torch.arange(1., 4.) * (i + 1), nan_loss=False)
        if i == 1:
            if kind == 'input':
                data['inputs'] = torch.tensor([1., float('nan'), 1.])
            else:
                data['nan_loss'] = True
        model.train_step(data, wrapper)
    return steps, wrapper._inner_count, model.w.detach().clone()


def test_skipped_input_counts_in_the_accumulation_window():
    """A batch skipped for NaN inputs counts as a step of the gradient
    accumulation window, exactly like a batch skipped for a NaN loss (the
    window's gradients are discarded): the windows stay aligned and the
    last update is applied."""
    loss_steps, loss_count, loss_w = _accumulated_run('loss')
    input_steps, input_count, input_w = _accumulated_run('input')
    assert loss_steps == [4, 6] and loss_count == 6
    assert (input_steps, input_count) == (loss_steps, loss_count)
    assert torch.equal(input_w, loss_w)


def test_skip_counts_survive_a_resume_but_not_load_from():
    """``max_skipped`` counts in total: the counts go into the checkpoint
    and come back on ``--resume``; ``load_from`` (fine-tuning) starts a new
    count."""
    hook = NonFiniteGuardHook(action='skip', max_skipped=5)
    hook.num_skipped, hook.consecutive = 4, 1
    checkpoint = dict(meta=dict(epoch=3))
    hook.before_save_checkpoint(SimpleNamespace(), checkpoint)
    assert checkpoint['meta'] == dict(
        epoch=3, nonfinite_guard=dict(num_skipped=4, consecutive=1))
    resumed = NonFiniteGuardHook(action='skip', max_skipped=5)
    resumed.after_load_checkpoint(SimpleNamespace(_resume=True), checkpoint)
    assert (resumed.num_skipped, resumed.consecutive) == (4, 1)
    fresh = NonFiniteGuardHook(action='skip', max_skipped=5)
    fresh.after_load_checkpoint(SimpleNamespace(_resume=False), checkpoint)
    assert (fresh.num_skipped, fresh.consecutive) == (0, 0)
    # an older checkpoint without the counts
    old = NonFiniteGuardHook(action='skip')
    old.after_load_checkpoint(SimpleNamespace(_resume=True), dict(meta={}))
    assert old.num_skipped == 0
