"""tools/misc/publish_run.py: log copy, checkpoint hash, results index."""
import hashlib
import importlib.util
import json
import os.path as osp

import pytest
import torch

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIG = osp.join(ROOT, 'configs', 'demo',
                  'vit-tiny_1xb64-mergemix_digits-32px.py')


def _tool():
    spec = importlib.util.spec_from_file_location(
        'publish_run', osp.join(ROOT, 'tools', 'misc', 'publish_run.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_work_dir(root, stamp='20261123_120000', val=(40.0, 61.5)):
    run = root / stamp
    (run / 'vis_data').mkdir(parents=True)
    lines = [dict(loss=2.3, epoch=1, iter=10, step=10)]
    lines += [{'accuracy/top1': v, 'step': i + 1} for i, v in enumerate(val)]
    lines += [dict(loss=1.1, epoch=30, iter=660, step=660)]
    (run / 'vis_data' / f'{stamp}.json').write_text(
        '\n'.join(json.dumps(x) for x in lines) + '\n')
    (run / f'{stamp}.log').write_text(
        '2026/11/23 12:00:00 - mmengine - INFO - start\n'
        'no stamp here\n'
        '2026/11/23 12:02:30 - mmengine - INFO - Epoch(val) [30]\n')
    ckpt = root / 'epoch_30.pth'
    torch.save(dict(meta=dict(time=stamp),
                    state_dict=dict(w=torch.arange(6.).reshape(2, 3),
                                    b=torch.zeros(0))), ckpt)
    (root / 'last_checkpoint').write_text(str(ckpt))
    return ckpt


def test_publish_writes_record_log_and_index(tmp_path):
    tool = _tool()
    work = tmp_path / 'work'
    ckpt = _fake_work_dir(work)
    out = tmp_path / 'runs'
    rec = tool.publish(str(work), CONFIG, str(out), command='python x.py')
    assert rec['top1'] == 61.5 and rec['top1_by_val'] == [40.0, 61.5]
    assert rec['epochs'] == 30 and rec['wall_time_s'] == 150.0
    assert rec['checkpoint_sha256'] == hashlib.sha256(
        ckpt.read_bytes()).hexdigest()
    assert rec['config'] == ('configs/demo/'
                             'vit-tiny_1xb64-mergemix_digits-32px.py')
    name = 'vit-tiny_1xb64-mergemix_digits-32px'
    assert (out / f'{name}.log.json').read_text() == (
        work / '20261123_120000' / 'vis_data' /
        '20261123_120000.json').read_text()
    index = (out / 'README.md').read_text()
    link = osp.relpath(CONFIG, str(out))
    assert f'| {name} | [config]({link}) | 61.50 | 30 | 2.5 min |' in index
    assert rec['checkpoint_sha256'] in index
    # the newest run of the work dir wins; a second record adds a row
    ckpt2 = _fake_work_dir(tmp_path / 'work2', stamp='20261124_090000',
                           val=(70.0, ))
    tool.publish(str(tmp_path / 'work2'), CONFIG, str(out), name='other',
                 checkpoint=str(ckpt2))
    assert (out / 'README.md').read_text().count('weights sha256') == 2
    # same weights, different metadata: file hashes differ, weights agree
    rec2 = json.loads((out / 'other.json').read_text())
    assert rec2['checkpoint_sha256'] != rec['checkpoint_sha256']
    assert rec2['weights_sha256'] == rec['weights_sha256']


def test_publish_errors_name_the_problem(tmp_path, capsys):
    tool = _tool()
    with pytest.raises(FileNotFoundError, match='no mmengine run'):
        tool.publish(str(tmp_path), CONFIG, str(tmp_path / 'o'))
    with pytest.raises(FileNotFoundError, match='config='):
        tool.publish(str(tmp_path), 'nope.py', str(tmp_path / 'o'))
    work = tmp_path / 'w'
    _fake_work_dir(work, val=())
    with pytest.raises(ValueError, match='no accuracy/top1'):
        tool.publish(str(work), CONFIG, str(tmp_path / 'o'))
    assert tool.main([str(tmp_path / 'missing'), '--config', CONFIG]) == 1
    assert 'no mmengine run' in capsys.readouterr().err


def test_publish_counts_come_from_the_checkpoint(tmp_path):
    """mmengine does not log an epoch's last iteration when it is not a
    multiple of the logging interval (30 epochs x 22 iterations, interval
    10: the last logged iteration is 658); the record takes the checkpoint's
    own counts."""
    tool = _tool()
    work = tmp_path / 'work'
    ckpt = _fake_work_dir(work)
    log = work / '20261123_120000' / 'vis_data' / '20261123_120000.json'
    log.write_text(log.read_text().replace('"iter": 660', '"iter": 658'))
    torch.save(dict(meta=dict(epoch=30, iter=660),
                    state_dict=dict(w=torch.ones(2))), ckpt)
    rec = tool.publish(str(work), CONFIG, str(tmp_path / 'runs'))
    assert (rec['epochs'], rec['iterations']) == (30, 660)
    torch.save(dict(state_dict=dict(w=torch.ones(2))), ckpt)  # no meta
    rec = tool.publish(str(work), CONFIG, str(tmp_path / 'runs'))
    assert (rec['epochs'], rec['iterations']) == (30, 658)  # the log's


def test_weights_hash_of_0d_tensors_and_unchanged_for_the_rest(tmp_path):
    """A 0-d tensor (BatchNorm's num_batches_tracked) used to crash the
    hash; for every other tensor the bytes hashed are those of
    ``value.view(torch.uint8)``, so published hashes stay valid."""
    tool = _tool()
    state = dict(w=torch.arange(6.).reshape(2, 3), b=torch.zeros(0),
                 m=torch.tensor([[True, False]]),
                 h=torch.arange(4, dtype=torch.float16))
    path = tmp_path / 'a.pth'
    torch.save(dict(state_dict=state), path)
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key].contiguous()
        digest.update(key.encode())
        digest.update(str(value.dtype).encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.view(torch.uint8).numpy().tobytes()
                      if value.numel() else b'')
    assert tool.weights_sha256(str(path)) == digest.hexdigest()
    state['n'] = torch.tensor(7)
    torch.save(dict(state_dict=state), path)
    with_0d = tool.weights_sha256(str(path))
    state['n'] = torch.tensor(8)
    torch.save(dict(state_dict=state), path)
    assert tool.weights_sha256(str(path)) != with_0d


def test_publish_writes_nothing_when_the_checkpoint_cannot_be_read(
        tmp_path):
    tool = _tool()
    work = tmp_path / 'work'
    ckpt = _fake_work_dir(work)
    ckpt.write_bytes(b'not a checkpoint')
    out = tmp_path / 'runs'
    with pytest.raises(Exception):
        tool.publish(str(work), CONFIG, str(out))
    assert not out.exists()
