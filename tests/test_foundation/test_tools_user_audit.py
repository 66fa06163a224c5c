"""Command-line problems a user hit with the tools (user audit): each test
runs a tool the way the README / docs / --help describe, on the embedded
digits demo, in-process (no training run; each test takes seconds)."""
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
DEMO = osp.join(ROOT, 'configs', 'demo',
                'vit-tiny_1xb64-mergemix_digits-32px.py')


@pytest.fixture(autouse=True)
def _restore_local_rank(monkeypatch):
    """tools/train.py and tools/test.py set LOCAL_RANK like mmpretrain's;
    keep it out of the other tests' environment (the HF Trainer would see a
    distributed launch)."""
    monkeypatch.setenv('LOCAL_RANK', '0')


def _tool(*parts):
    path = osp.join(ROOT, 'tools', *parts)
    name = 'audit_' + '_'.join(parts).replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _child(tmp_path, body, name='child.py'):
    path = tmp_path / name
    path.write_text(f'_base_ = [{DEMO!r}]\n' + body)
    return str(path)


def _demo_checkpoint(path):
    """An mmengine checkpoint of the (randomly initialised) demo model."""
    from mmengine.runner import save_checkpoint

    from mergemix_mm.analysis import build_model, load_config
    torch.manual_seed(0)
    model = build_model(load_config(DEMO))
    save_checkpoint(dict(meta=dict(epoch=0, iter=0),
                         state_dict=model.state_dict()), str(path))
    return str(path)


# --- analysis/benchmark_speed.py, analysis/get_flops.py ---------------------
def test_benchmark_speed_times_the_demo_configs_vit():
    """docs/analysis.md: `benchmark_speed.py CONFIG --settings none merge49`.
    With an mmpretrain VisionTransformer backbone it died with 'backbone of
    type NoneType' (BaseBackbone.train returns None, so .eval() did)."""
    out = _tool('analysis', 'benchmark_speed.py').main([
        DEMO, '--settings', 'none', 'merge32', '--repeats', '1', '--warmup',
        '0', '--batch-size', '1', '--threads', '1'
    ])
    assert out['meta']['img_size'] == 32
    assert out['meta']['backend'] == 'mmpretrain'
    assert out['results']['merge32']['r_list'] == [13, 9, 6, 4]


def test_flops_and_speed_name_a_setting_too_large_for_the_model(capsys):
    """64 patches cannot merge 98 tokens: the error names the --settings
    entry, and comes before the table starts."""
    flops = _tool('analysis', 'get_flops.py')
    with pytest.raises(ValueError, match=r'--settings merge98 \(32 px'):
        flops.main([DEMO, '--settings', 'none', 'merge98'])
    assert capsys.readouterr().out == ''
    with pytest.raises(ValueError, match='--settings foo'):
        flops.main([DEMO, '--settings', 'foo'])
    with pytest.raises(ValueError, match='--img-size 30 must be a positive '
                       'multiple'):
        flops.main([DEMO, '--img-size', '30', '--settings', 'none'])
    speed = _tool('analysis', 'benchmark_speed.py')
    with pytest.raises(ValueError, match='--settings merge98'):  # default
        speed.main([DEMO, '--repeats', '1', '--warmup', '0'])
    with pytest.raises(SystemExit):
        speed.parse_args(['--threads', '0'])
    assert '--threads 0 must be >= 1' in capsys.readouterr().err


# --- --cfg-options ---------------------------------------------------------
@pytest.mark.parametrize('entry', [
    'train_cfg.max_epochs', "model.train_cfg.augments=[dict(type='Mixup',"
    'alpha=0.8)]'
])
def test_bad_cfg_options_are_usage_errors(entry, capsys):
    """mmengine's DictAction raised 'not enough values to unpack' (no '=')
    or recursed into a RecursionError (a dict value)."""
    for tool, argv in ((('train.py', ), [DEMO]),
                       (('test.py', ), [DEMO, 'x.pth']),
                       (('analysis', 'calibration.py'),
                        [DEMO, 'x.pth', '--out', 'o'])):
        with pytest.raises(SystemExit) as exc:
            _tool(*tool).parse_args(argv + ['--cfg-options', entry])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert 'argument --cfg-options' in err and 'KEY=VALUE' in err


# --- test.py ---------------------------------------------------------------
def test_test_py_refuses_a_checkpoint_of_another_model(tmp_path):
    """A checkpoint that does not fit the config was evaluated with random
    weights (mmengine loads non-strictly; only a warning in the log)."""
    test = _tool('test.py')
    other = tmp_path / 'other.pth'
    torch.save(dict(meta=dict(epoch=1, iter=1),
                    state_dict={'backbone.model.cls_token': torch.zeros(1)}),
               other)
    opts = ['--cfg-options', 'test_dataloader.dataset.indices=8']
    with pytest.raises(SystemExit, match='does not fit the model'):
        test.main([DEMO, str(other), '--work-dir', str(tmp_path / 'w')] +
                  opts)
    good = _demo_checkpoint(tmp_path / 'demo.pth')
    metrics = test.main([DEMO, good, '--work-dir', str(tmp_path / 'w')] +
                        opts)
    assert 'accuracy/top1' in metrics
    with pytest.raises(SystemExit):  # mmengine's DumpResults needs a pickle
        test.parse_args([DEMO, good, '--out', 'preds.json'])


def test_test_py_refuses_a_checkpoint_with_another_head_shape(tmp_path):
    """Same keys, another class count: mmengine skipped the mismatched
    head with a log warning and evaluated a random head."""
    test = _tool('test.py')
    good = torch.load(_demo_checkpoint(tmp_path / 'demo.pth'),
                      weights_only=False)
    state = good['state_dict']
    head = [k for k in state if k.startswith('head.') and
            k.endswith('weight')]
    assert head
    state[head[0]] = torch.zeros(100, state[head[0]].shape[1])
    other = tmp_path / 'head100.pth'
    torch.save(good, other)
    opts = ['--cfg-options', 'test_dataloader.dataset.indices=8']
    with pytest.raises(SystemExit, match=re.escape(
            f'1 have another shape there (checkpoint vs model, e.g. '
            f"['{head[0]}: (100, ")):
        test.main([DEMO, str(other), '--work-dir', str(tmp_path / 'w')] +
                  opts)


def test_test_py_evaluates_a_checkpoint_at_another_image_size(tmp_path):
    """The ViT resizes pos_embed when it loads (a load hook), so testing a
    32 px checkpoint at 64 px is not a misfit."""
    test = _tool('test.py')
    ckpt = _demo_checkpoint(tmp_path / 'demo32.pth')
    metrics = test.main([
        DEMO, ckpt, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
        'model.backbone.img_size=64', 'test_dataloader.dataset.img_size=64',
        'test_dataloader.dataset.indices=8'
    ])
    assert 'accuracy/top1' in metrics


def test_test_py_shape_reads_torch_sizes():
    test = _tool('test.py')
    assert test._shape('[10, 96]') == (10, 96)
    assert test._shape('[]') == ()  # a scalar weight


def test_test_py_unfit_weights_on_small_models(tmp_path):
    """Checkpoint layouts (a bare state dict, keys of a DDP-wrapped model),
    a wrapped model, and missing and mismatched weights together."""
    from mergemix_mm.utils.checkpoint_safety import CheckpointCorruptError
    test = _tool('test.py')
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    state = model.state_dict()
    torch.save(state, tmp_path / 'bare.pth')
    torch.save(dict(state_dict={'module.' + k: v for k, v in state.items()}),
               tmp_path / 'ddp.pth')
    for name in ('bare.pth', 'ddp.pth'):
        assert test.unfit_weights(torch.nn.DataParallel(model),
                                  str(tmp_path / name)) == ([], [])
    torch.save(dict(state_dict={'0.weight': torch.zeros(4, 2),
                                '0.bias': torch.zeros(3)}),
               tmp_path / 'other.pth')
    missing, mismatched = test.unfit_weights(model,
                                             str(tmp_path / 'other.pth'))
    assert sorted(missing) == ['1.bias', '1.weight']
    assert mismatched == ['0.weight: (4, 2) vs (3, 2)']
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(CheckpointCorruptError, match='empty.pth'):
        test.unfit_weights(model, str(tmp_path / 'empty.pth'))

    class Refusing(torch.nn.Linear):

        def load_state_dict(self, *args, **kwargs):
            raise RuntimeError('not a size mismatch')

    with pytest.raises(RuntimeError, match='not a size mismatch'):
        test.unfit_weights(Refusing(2, 3), str(tmp_path / 'bare.pth'))


def test_test_py_unfit_weights_with_a_renaming_load_hook(tmp_path):
    """A timm checkpoint without ToMeTimmViT's 'model.' prefix, one weight
    of another shape: the hook renames the keys, so the mismatch is named
    with the model's key and the missing keys cannot be told apart (the
    check must not fail on the second load)."""
    from mmpretrain.registry import MODELS
    test = _tool('test.py')
    model = torch.nn.Module()
    model.backbone = MODELS.build(dict(
        type='ToMeTimmViT', model_name='vit_tiny_patch16_224', img_size=32,
        patch_size=4, depth=1))
    state = {
        'backbone.' + k[len('backbone.model.'):]: v
        for k, v in model.state_dict().items()
    }
    assert test.unfit_weights(model, str(_save(tmp_path / 'ok.pth',
                                               state))) == ([], [])
    state['backbone.cls_token'] = torch.zeros(1, 1, 7)
    missing, mismatched = test.unfit_weights(
        model, str(_save(tmp_path / 'bad.pth', state)))
    assert missing == []
    assert mismatched == ['backbone.model.cls_token: (1, 1, 7) vs '
                          f'{tuple(model.backbone.model.cls_token.shape)}']


def _save(path, state):
    torch.save(dict(state_dict=state), path)
    return path


# --- config inheritance: swapping the augment ------------------------------
def test_child_config_augment_mistakes_fail_at_build_naming_the_fix(
        tmp_path):
    from mmpretrain.registry import MODELS

    from mergemix_mm.analysis import load_config
    limit = '\ntrain_dataloader = dict(dataset=dict(indices=8))\n'
    # the shorthand merged into the base's `augments` dict
    cfg = load_config(_child(
        tmp_path, "model = dict(train_cfg=dict(type='Mixup', alpha=0.8))" +
        limit, 'type.py'))
    with pytest.raises(TypeError, match='Replace the list instead'):
        MODELS.build(cfg.model)
    # the documented way builds
    cfg = load_config(_child(
        tmp_path, "model = dict(train_cfg=dict(augments=[dict(type='Mixup', "
        'alpha=0.8)]))' + limit, 'ok.py'))
    model = MODELS.build(cfg.model)
    aug = model.data_preprocessor.batch_augments.augments[0]
    assert type(aug).__name__ == 'Mixup'


# --- analysis/calibration.py, occlusion.py, visualize_mix.py ---------------
def test_analysis_input_errors_write_nothing(tmp_path, monkeypatch, capsys):
    calib = _tool('analysis', 'calibration.py')
    out = tmp_path / 'out'
    ckpt = _demo_checkpoint(tmp_path / 'demo.pth')
    for bad in (['--batch-size', '0'], ['--max-batches', '0']):
        with pytest.raises(SystemExit):
            calib.parse_args([DEMO, ckpt, '--out', str(out)] + bad)
    occl = _tool('analysis', 'occlusion.py')
    with pytest.raises(SystemExit):
        occl.parse_args([DEMO, ckpt, '--out', str(out), '--fill', 'nan'])
    assert '--fill nan must be a finite number' in capsys.readouterr().err
    # a corrupt checkpoint: one line naming it (no traceback), no empty --out
    broken = tmp_path / 'broken.pth'
    broken.write_text('{"not": "a checkpoint"}')
    monkeypatch.setattr(sys, 'argv', [
        'calibration.py', DEMO, str(broken), '--out', str(out), '--device',
        'cpu'
    ])
    with pytest.raises(SystemExit, match=r"^error: checkpoint .*broken"):
        calib.run_cli(calib.main)
    assert not out.exists()


# --- misc/publish_run.py ---------------------------------------------------
def _segment(work, stamp, log_lines, records):
    run = work / stamp
    (run / 'vis_data').mkdir(parents=True)
    (run / 'vis_data' / f'{stamp}.json').write_text(
        ''.join(json.dumps(r) + '\n' for r in records))
    (run / f'{stamp}.log').write_text('\n'.join(log_lines) + '\n')


def test_publish_run_covers_every_segment_of_a_resumed_run(tmp_path):
    """getting_started.md: train, then --resume an interrupted run, then
    publish: only the last segment (its log, validations and wall time) was
    published."""
    work = tmp_path / 'work'
    t = '2026/12/07 12:{:02d}:00 - mmengine - INFO - '
    _segment(work, '20261207_120000', [
        t.format(0) + 'start', t.format(1) + 'Saving checkpoint at 1 epochs',
        t.format(2) + 'Saving checkpoint at 2 epochs',
        t.format(4) + 'killed in epoch 3'
    ], [
        dict(loss=2.3, epoch=1, iter=10, step=10),
        {'accuracy/top1': 10.0, 'step': 1},
        dict(loss=2.2, epoch=2, iter=20, step=20),
        {'accuracy/top1': 20.0, 'step': 2},
        dict(loss=2.1, epoch=3, iter=30, step=30),  # lost: redone later
    ])
    _segment(work, '20261207_130000', [
        t.format(10) + 'resumed epoch: 2, iter: 22',
        t.format(13) + 'Saving checkpoint at 3 epochs'
    ], [
        dict(loss=2.0, epoch=3, iter=30, step=30),
        {'accuracy/top1': 30.0, 'step': 3},
    ])
    ckpt = work / 'epoch_3.pth'
    torch.save(dict(meta={}, state_dict=dict(w=torch.ones(2))), ckpt)
    (work / 'last_checkpoint').write_text(str(ckpt))
    out = tmp_path / 'runs'
    rec = _tool('misc', 'publish_run.py').publish(str(work), DEMO, str(out))
    assert rec['top1_by_val'] == [10.0, 20.0, 30.0]
    assert rec['epochs'] == 3 and rec['iterations'] == 30
    assert rec['wall_time_s'] == 4 * 60 + 3 * 60
    assert rec['runs'] == ['20261207_120000', '20261207_130000']
    log = [json.loads(x) for x in
           (out / rec['log']).read_text().splitlines()]
    assert [r['loss'] for r in log if 'loss' in r] == [2.3, 2.2, 2.0]


# --- dataset converters ----------------------------------------------------
def test_converters_name_the_wrong_input(tmp_path, capsys):
    empty = tmp_path / 'empty'
    empty.mkdir()
    a_file = tmp_path / 'file.tgz'
    a_file.write_text('x')
    out = tmp_path / 'out'
    cub = _tool('dataset_converters', 'prepare_cub.py')
    cases = [
        (cub, ['--src-dir', str(empty)], "--src-dir: '.*empty' holds no "
         'files'),
        (cub, ['--src-dir', str(a_file)], 'is a file, not a folder'),
        (cub, ['--archive', str(empty)], 'is a folder, not a file'),
        (_tool('dataset_converters', 'prepare_cifar100.py'),
         ['--src-dir', str(empty)], '--src-dir: .* holds none of the files'),
        (_tool('dataset_converters', 'prepare_imagenet.py'),
         ['--train-dir', str(empty)], '--train-dir: .* holds no training'),
        (_tool('dataset_converters', 'prepare_stanford_cars.py'),
         ['--archives', str(empty)], '--archives: folder .* holds no files'),
    ]
    for tool, argv, message in cases:
        assert tool.main(argv + ['--out', str(out)]) == 2, argv
        err = capsys.readouterr().err
        assert re.search(message, err), (argv, err)
        assert not out.exists(), argv


# --- dist scripts ----------------------------------------------------------
@pytest.mark.parametrize('script,args', [('dist_train.sh', [DEMO]),
                                         ('dist_test.sh', [DEMO, 'x.pth'])])
def test_dist_scripts_print_usage_on_missing_arguments(script, args):
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', script), *args],
                          capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, PYTHON='false'))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f'usage: bash tools/{script} CONFIG')
