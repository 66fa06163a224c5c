"""tools/analysis/{visualize_mix,calibration,occlusion}.py end to end on a
tiny digits ViT (in-process), and their errors for bad arguments."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from analysis_utils import ROOT, assert_png, load_tool, write_tiny_config

from mergemix_mm.analysis import build_model, load_config

FAST = ['--device', 'cpu', '--max-batches', '1']


@pytest.fixture(scope='module')
def tools():
    return {
        n: load_tool(n)
        for n in ('visualize_mix', 'calibration', 'occlusion')
    }


@pytest.fixture(scope='module')
def other_checkpoint(tiny_config, tmp_path_factory):
    from mmengine.runner import save_checkpoint
    torch.manual_seed(1)
    model = build_model(load_config(tiny_config))
    path = str(tmp_path_factory.mktemp('ckpt2') / 'other.pth')
    save_checkpoint(dict(state_dict=model.state_dict()), path)
    return path


def test_build_model_loads_the_checkpoint(tiny_config, tiny_checkpoint):
    saved = torch.load(tiny_checkpoint, weights_only=False)['state_dict']
    model = build_model(load_config(tiny_config), tiny_checkpoint)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, saved[key])
    assert not model.training


def test_visualize_mix_writes_grids(tools, tiny_config, tiny_checkpoint,
                                    tmp_path):
    out = tmp_path / 'vis'
    summary = tools['visualize_mix'].main([
        tiny_config, '--checkpoint', tiny_checkpoint, '--out',
        str(out), '--num-samples', '3', '--batch-size', '4', '--device', 'cpu'
    ])
    (aug, ) = summary['augments']
    assert aug['type'] == 'MergeMix' and not aug['estimated']
    assert aug['saliency'] == 'own' and aug['has_mask']
    assert_png(str(out / aug['png']))
    assert json.load(open(
        out / 'mix_summary.json'))['augments'][0]['png'] == aug['png']
    assert len(aug['partner']) == 3
    assert all(p != i for i, p in enumerate(aug['partner']))
    # same seed -> the same crops, partners, masks: the same picture
    again = tools['visualize_mix'].main([
        tiny_config, '--checkpoint', tiny_checkpoint, '--out',
        str(tmp_path / 'again'), '--num-samples', '3', '--batch-size', '4',
        '--device', 'cpu'
    ])
    assert again['augments'] == summary['augments']
    import matplotlib.image as mpimg
    np.testing.assert_array_equal(
        mpimg.imread(str(out / aug['png'])),
        mpimg.imread(str(tmp_path / 'again' / aug['png'])))


def test_visualize_mix_errors(tools, tmp_path):
    plain = write_tiny_config(tmp_path, augments='[]', name='plain.py')
    with pytest.raises(ValueError, match='plain.py.*has no batch augments'):
        tools['visualize_mix'].main(
            [plain, '--out',
             str(tmp_path / 'o'), '--device', 'cpu'])
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        tools['visualize_mix'].main([
            plain, '--checkpoint',
            str(tmp_path / 'nope.pth'), '--out',
            str(tmp_path / 'o')
        ])
    with pytest.raises(FileNotFoundError, match='missing.py'):
        tools['visualize_mix'].main(
            [str(tmp_path / 'missing.py'), '--out',
             str(tmp_path / 'o')])
    with pytest.raises(SystemExit):  # argparse: --batch-size must be >= 2
        tools['visualize_mix'].main([plain, '--out', 'o', '--batch-size', '1'])
    with pytest.raises(SystemExit):  # more rows than the mixed batch holds
        tools['visualize_mix'].parse_args(
            [plain, '--out', 'o', '--batch-size', '2', '--num-samples', '4'])
    args = tools['visualize_mix'].parse_args(
        [plain, '--out', 'o', '--num-samples', '4'])
    assert args.batch_size == 4


def test_calibration_and_occlusion_agree(tools, tiny_config, tiny_checkpoint,
                                         other_checkpoint, tmp_path):
    cal = tools['calibration'].main([
        tiny_config, tiny_checkpoint, other_checkpoint, '--labels', 'A', 'B',
        '--out',
        str(tmp_path / 'cal'), *FAST
    ])
    assert_png(str(tmp_path / 'cal' / 'reliability.png'))
    table = open(tmp_path / 'cal' / 'calibration.md').read()
    assert '| A | 150 |' in table and '| B | 150 |' in table
    saved = json.load(open(tmp_path / 'cal' / 'calibration.json'))
    assert [r['label'] for r in saved['results']] == ['A', 'B']
    for rec in saved['results']:
        assert len(rec['bins']) == 15
        bins_ece = sum(b['count'] / rec['num_samples'] *
                       abs(b['accuracy'] - b['confidence'])
                       for b in rec['bins'])
        assert rec['ece'] == pytest.approx(bins_ece)

    occ = tools['occlusion'].main([
        tiny_config, tiny_checkpoint, '--checkpoints', other_checkpoint,
        '--labels', 'A', 'B', '--fractions', '0', '0.5', '1', '--out',
        str(tmp_path / 'occ'), *FAST
    ])
    assert_png(str(tmp_path / 'occ' / 'occlusion.png'))
    assert [r['label'] for r in occ] == ['A', 'B']
    for c, o in zip(cal, occ):
        assert o['fractions'] == [0.0, 0.5, 1.0]
        # 0 % occlusion is the plain top-1 of the same images
        assert o['top1'][0] == pytest.approx(100 * c['accuracy'])
    table = open(tmp_path / 'occ' / 'occlusion.md').read()
    assert '| occluded (%) | A | B |' in table


def test_calibration_and_occlusion_errors(tools, tiny_config, tiny_checkpoint,
                                          tmp_path):
    missing = str(tmp_path / 'missing.pth')
    for name in ('calibration', 'occlusion'):
        with pytest.raises(FileNotFoundError, match='missing.pth'):
            tools[name].main([tiny_config, missing, '--out', str(tmp_path)])
        with pytest.raises(SystemExit):  # one label for two checkpoints
            tools[name].main([
                tiny_config, tiny_checkpoint, tiny_checkpoint, '--labels', 'A',
                '--out',
                str(tmp_path)
            ])
    with pytest.raises(SystemExit):  # no checkpoint at all
        tools['occlusion'].main([tiny_config, '--out', str(tmp_path)])
    with pytest.raises(SystemExit):
        tools['occlusion'].main([
            tiny_config, tiny_checkpoint, '--out',
            str(tmp_path), '--fractions', '1.5'
        ])
    with pytest.raises(SystemExit):  # one curve point given twice
        tools['occlusion'].parse_args([
            tiny_config, tiny_checkpoint, '--out',
            str(tmp_path), '--fractions', '0.5', '0.5'
        ])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available'):
            tools['calibration'].main([
                tiny_config, tiny_checkpoint, '--out',
                str(tmp_path), '--device', 'cuda'
            ])


def test_command_line_error_is_one_clear_line(tiny_config, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'analysis', 'occlusion.py'), tiny_config,
        str(tmp_path / 'gone.pth'), '--out',
        str(tmp_path)
    ],
                          capture_output=True,
                          text=True,
                          env=env,
                          cwd=ROOT,
                          timeout=300)
    assert proc.returncode != 0
    assert "error: checkpoint file '" in proc.stderr
    assert 'gone.pth' in proc.stderr and 'Traceback' not in proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_tools_match_on_gpu(tools, tiny_config, tiny_checkpoint, tmp_path):
    args = [tiny_config, tiny_checkpoint, '--max-batches', '1']
    cpu = tools['calibration'].main(
        [*args, '--out',
         str(tmp_path / 'c'), '--device', 'cpu'])
    gpu = tools['calibration'].main(
        [*args, '--out',
         str(tmp_path / 'g'), '--device', 'cuda'])
    assert gpu[0]['accuracy'] == pytest.approx(cpu[0]['accuracy'],
                                               abs=1 / 150 + 1e-9)
    assert gpu[0]['ece'] == pytest.approx(cpu[0]['ece'], abs=0.02)
    occ_cpu = tools['occlusion'].main([
        *args, '--out',
        str(tmp_path / 'oc'), '--device', 'cpu', '--fractions', '0', '0.3'
    ])
    occ_gpu = tools['occlusion'].main([
        *args, '--out',
        str(tmp_path / 'og'), '--device', 'cuda', '--fractions', '0', '0.3'
    ])
    for a, b in zip(occ_cpu[0]['top1'], occ_gpu[0]['top1']):
        assert a == pytest.approx(b, abs=100 / 150 + 1e-9)
    summary = load_tool('visualize_mix').main([
        tiny_config, '--checkpoint', tiny_checkpoint, '--out',
        str(tmp_path / 'v'), '--device', 'cuda', '--num-samples', '2'
    ])
    assert_png(str(tmp_path / 'v' / summary['augments'][0]['png']))


@pytest.mark.parametrize('name', ['visualize_mix', 'calibration',
                                  'occlusion'])
def test_bad_out_and_device_fail_before_the_work(tools, tiny_config,
                                                 tiny_checkpoint, tmp_path,
                                                 capsys, name):
    """An ``--out`` that names a file (or lies under one) is a usage error
    naming ``--out`` at parse time (it used to fail after the whole
    evaluation with a bare FileExistsError); a ``--device`` that is not a
    device is a ValueError naming ``--device`` (was torch's RuntimeError)."""
    a_file = tmp_path / 'a_file'
    a_file.write_text('x')
    ckpt = (['--checkpoint', tiny_checkpoint] if name == 'visualize_mix'
            else [tiny_checkpoint])
    for out in (a_file, a_file / 'sub'):
        with pytest.raises(SystemExit):
            tools[name].parse_args([tiny_config, *ckpt, '--out', str(out)])
        assert '--out' in capsys.readouterr().err
    args = tools[name].parse_args(
        [tiny_config, *ckpt, '--out', str(tmp_path / 'new' / 'dir')])
    assert args.out == str(tmp_path / 'new' / 'dir')
    with pytest.raises(ValueError, match="--device 'gpu' is not a device"):
        tools[name].main([tiny_config, *ckpt, '--out', str(tmp_path / 'o'),
                          '--device', 'gpu'])


def test_every_checkpoint_sees_the_same_train_images(tools, tiny_config,
                                                     tiny_checkpoint):
    """With a random pipeline (``--split train``) the checkpoints of one
    run are compared on the same crops: the generators are re-seeded per
    checkpoint (the second checkpoint used to get other crops)."""
    import argparse
    iter_checkpoint_models = tools['calibration'].iter_checkpoint_models
    args = argparse.Namespace(checkpoints=[tiny_checkpoint] * 2,
                              cfg_options=None, split='train', batch_size=8)
    firsts = []
    for *_, loader in iter_checkpoint_models(args, ['a', 'b'],
                                             [tiny_config] * 2, 'cpu'):
        firsts.append(next(iter(loader))['inputs'])
    assert len(firsts) == 2
    assert all(torch.equal(x, y) for x, y in zip(*firsts))


def test_occlusion_of_configs_with_other_batch_and_patch_sizes(
        tools, tiny_config, tiny_checkpoint, tmp_path, monkeypatch):
    """The masks are drawn batch by batch, so every checkpoint runs with the
    first config's test batch size (a config with another one used to get
    other occlusions); with different cell sizes each curve names its own
    (the title used to give the first checkpoint's for all)."""
    from mmengine.runner import save_checkpoint
    other = tmp_path / 'p4.py'
    other.write_text(f'_base_ = [{tiny_config!r}]\n'
                     'model = dict(backbone=dict(patch_size=4))\n'
                     'test_dataloader = dict(batch_size=64)\n')
    torch.manual_seed(2)
    model = build_model(load_config(str(other)))
    other_ckpt = str(tmp_path / 'p4.pth')
    save_checkpoint(dict(state_dict=model.state_dict()), other_ckpt)
    tool = tools['occlusion']
    seen, plotted = [], {}
    import mergemix_mm.analysis as analysis
    original = analysis.occlusion_curve

    def spy_curve(model, loader, *args, **kwargs):
        seen.append(loader.batch_size)
        return original(model, loader, *args, **kwargs)

    def spy_plot(curves, path, title=None):
        plotted.update(labels=list(curves), title=title)

    monkeypatch.setattr(analysis, 'occlusion_curve', spy_curve)
    monkeypatch.setattr(analysis, 'plot_occlusion', spy_plot)
    tool.main([tiny_config, tiny_checkpoint, other_ckpt, '--configs',
               tiny_config, str(other), '--labels', 'A', 'B',
               '--fractions', '0', '0.5', '--out', str(tmp_path / 'occ'),
               '--device', 'cpu', '--max-batches', '1'])
    assert seen == [150, 150]
    assert plotted['labels'] == ['A (8x8)', 'B (4x4)']
    assert plotted['title'].startswith('random patch occlusion (')
    md = (tmp_path / 'occ' / 'occlusion.md').read_text()
    assert 'Occlusion cells: A 8x8, B 4x4.' in md


def test_calibration_labels_must_be_distinct(tools, tiny_config,
                                             tiny_checkpoint, tmp_path):
    """Two checkpoints with one label could not be told apart in the table
    and the figure; refused before any work, as occlusion.py does."""
    with pytest.raises(ValueError, match='must be distinct'):
        tools['calibration'].main([
            tiny_config, tiny_checkpoint, tiny_checkpoint, '--labels', 'A',
            'A', '--out', str(tmp_path / 'cal'), *FAST])
    assert not (tmp_path / 'cal').exists()


@pytest.mark.parametrize('name,outputs', [
    ('calibration', ('reliability.png', 'calibration.md',
                     'calibration.json')),
    ('occlusion', ('occlusion.png', 'occlusion.md', 'occlusion.json')),
    ('visualize_mix', ('mix_summary.json', )),
])
def test_failed_write_keeps_the_previous_outputs(tools, tiny_config,
                                                 tiny_checkpoint, tmp_path,
                                                 monkeypatch, name, outputs):
    """A write that fails (here: the disk is full when the file is synced)
    leaves every earlier output as it was, never a truncated one, and no
    temporary files: figures, tables and JSON are written to a temporary
    file and renamed into place."""
    out = tmp_path / name
    out.mkdir()
    for f in outputs:
        (out / f).write_bytes(b'old')
    args = {
        'calibration': [tiny_config, tiny_checkpoint, *FAST],
        'occlusion': [tiny_config, tiny_checkpoint, '--fractions', '0', '1',
                      *FAST],
        'visualize_mix': [tiny_config, '--checkpoint', tiny_checkpoint,
                          '--num-samples', '2', '--batch-size', '2',
                          '--device', 'cpu'],
    }[name]

    def full(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', full)
    with pytest.raises(OSError, match='No space left'):
        tools[name].main([*args, '--out', str(out)])
    for f in outputs:
        assert (out / f).read_bytes() == b'old', f
    assert not [f for f in os.listdir(out) if f.endswith('.tmp')]
