"""End-to-end checks of tools/train.py, tools/test.py and dist_train.sh."""
import glob
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
DEMO = osp.join(ROOT, 'configs', 'demo', 'vit-tiny_1xb64-mixup_digits-32px.py')
SHORT = ['train_cfg.max_epochs=3', 'train_cfg.val_interval=3',
         'default_hooks.logger.interval=5']


def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('OMP_NUM_THREADS', '1')
    return env


def _train(work_dir, *extra, cfg_options=SHORT, config=DEMO, timeout=600):
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config,
           '--work-dir', str(work_dir), *extra]
    if cfg_options:
        cmd += ['--cfg-options', *cfg_options]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(),
                          timeout=timeout, cwd=ROOT)


def _log_text(work_dir):
    logs = sorted(glob.glob(osp.join(str(work_dir), '*', '*.log')))
    return '\n'.join(open(p).read() for p in logs)


def test_train_then_test_reports_top1(tmp_path):
    proc = _train(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    top1 = re.findall(r'accuracy/top1: ([\d.]+)', _log_text(tmp_path))
    assert top1, 'validation did not report top-1'
    ckpt = osp.join(str(tmp_path), 'epoch_3.pth')
    assert osp.isfile(ckpt)
    test = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'test.py'), DEMO, ckpt,
         '--work-dir', str(tmp_path / 'test')],
        capture_output=True, text=True, env=_env(), timeout=300, cwd=ROOT)
    assert test.returncode == 0, test.stderr[-3000:]
    assert 'accuracy/top1' in test.stdout + test.stderr


def test_kill_after_first_checkpoint_then_resume(tmp_path):
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), DEMO,
           '--work-dir', str(tmp_path), '--cfg-options', *SHORT]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT)
    first = osp.join(str(tmp_path), 'epoch_1.pth')
    deadline = time.time() + 300
    while not osp.isfile(first) and time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail('training exited before the first checkpoint')
        time.sleep(0.2)
    time.sleep(0.5)  # let the save finish writing (atomic save is issue 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not osp.isfile(osp.join(str(tmp_path), 'epoch_3.pth'))
    resumed = _train(tmp_path, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = resumed.stdout + resumed.stderr
    m = re.search(r'resumed epoch: (\d+), iter: (\d+)', out)
    assert m, 'the second run did not resume'
    assert int(m.group(1)) >= 1
    assert 'Epoch(train)   [1]' not in out  # did not restart from zero
    assert osp.isfile(osp.join(str(tmp_path), 'epoch_3.pth'))


@pytest.mark.parametrize('override, message', [
    (['train_dataloader.dataset.type=CIFAR100Local',
      'train_dataloader.dataset.data_root=/nonexistent/cifar'],
     '/nonexistent/cifar'),
])
def test_bad_config_names_problem(tmp_path, override, message):
    proc = _train(tmp_path, cfg_options=SHORT + override, timeout=300)
    assert proc.returncode != 0
    # The final error (not the config echo at start-up) names the problem.
    final_error = proc.stderr.strip().splitlines()[-1]
    assert message in final_error, final_error


def test_unknown_augment_type_names_it(tmp_path):
    cfg = tmp_path / 'unknown_aug.py'
    cfg.write_text(f"_base_ = [{DEMO!r}]\n"
                   'model = dict(train_cfg=dict('
                   "augments=[dict(type='NoSuchMix')]))\n")
    proc = _train(tmp_path, config=str(cfg), timeout=300)
    assert proc.returncode != 0
    final_error = proc.stderr.strip().splitlines()[-1]
    assert 'NoSuchMix is not in the' in final_error, final_error


def test_typo_in_custom_imports_names_module(tmp_path):
    cfg = tmp_path / 'typo.py'
    cfg.write_text(f"_base_ = [{DEMO!r}]\n"
                   "custom_imports = dict(imports=['mergemix_mx'], "
                   "allow_failed_imports=False)\n")
    proc = _train(tmp_path, config=str(cfg), timeout=300)
    assert proc.returncode != 0
    assert "No module named 'mergemix_mx'" in proc.stderr


@pytest.mark.slow
def test_dist_train_two_cpu_processes(tmp_path):
    env = _env()
    env['PYTHON'] = sys.executable
    env['PORT'] = '29517'
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), DEMO, '2',
         '--work-dir', str(tmp_path), '--cfg-options',
         'train_cfg.max_epochs=1', 'train_cfg.val_interval=1'],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = _log_text(tmp_path)
    assert 'gloo' in proc.stdout + proc.stderr or torch_cuda()
    assert 'Epoch(val) [1]' in log
    assert osp.isfile(osp.join(str(tmp_path), 'epoch_1.pth'))


def torch_cuda():
    import torch
    return torch.cuda.is_available()


@pytest.mark.parametrize('script, head', [
    ('slurm_train.sh', ['part', 'job', 'cfg.py', 'work']),
    ('slurm_test.sh', ['part', 'job', 'cfg.py', 'ckpt.pth']),
])
def test_slurm_scripts_pass_arguments_whole(tmp_path, script, head):
    """Extra arguments reach the Python tool unsplit (a --cfg-options value
    with a space used to be split into two arguments)."""
    fake = tmp_path / 'srun'
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
    value = "model.backbone.arch='deit-small'  work_dir=a b"
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', script), *head, '--cfg-options',
         value], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.splitlines()
    assert args[-2:] == ['--cfg-options', value]
    assert '--launcher=slurm' in args


@pytest.mark.parametrize('extra, work_dir, passed', [
    ([], 'work_dirs/job', []),
    (['mine'], 'mine', []),
    (['mine', '--amp'], 'mine', ['--amp']),
    (['--resume'], 'work_dirs/job', ['--resume']),
    (['--cfg-options', 'a=1'], 'work_dirs/job', ['--cfg-options', 'a=1']),
])
def test_slurm_train_work_dir_is_optional(tmp_path, extra, work_dir,
                                          passed):
    """WORK_DIR may be left out: a 4th argument that is a flag goes to
    train.py (a requeued ``... cfg.py --resume`` used to train from scratch
    in a work dir named '--resume')."""
    fake = tmp_path / 'srun'
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'slurm_train.sh'), 'part', 'job',
         'cfg.py', *extra], capture_output=True, text=True, env=env,
        timeout=60)
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.splitlines()
    tail = args[args.index('--launcher=slurm') + 1:]
    assert args[args.index('--launcher=slurm') - 1] == f'--work-dir={work_dir}'
    assert tail == passed
