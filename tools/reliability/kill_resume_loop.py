"""Kill a CPU demo run at random points, resume it, and check nothing is lost.

For every trial the tool starts a short training run of the digits demo, kills
it with SIGKILL at a random point of one of four kinds, resumes it with
``--resume`` (auto) and compares the result with one uninterrupted reference
run of the same config and seed:

* ``train_iter``: before a random training iteration (inside an epoch);
* ``val``: after a random validation iteration (validation follows the
  epoch's checkpoint);
* ``save``: half-way through writing a random epoch's checkpoint (half the
  bytes fsync-ed to disk, then SIGKILL);
* ``random_time``: an external SIGKILL at a uniformly random wall-clock time
  of the run (may hit start-up, training, validation or saving);
* ``truncate_latest``: SIGKILL in the last epoch, then the checkpoint that
  ``last_checkpoint`` names is truncated to a random length (what a node
  failure leaves when the page cache never reached the disk, or a partial
  copy).

Checked per trial: the resumed run exits 0; it resumed from the newest
complete checkpoint on disk (lost finished epochs = newest good checkpoint
before resuming - resumed epoch, must be 0); final epoch and iteration equal
the reference; the final weights equal the reference's bit for bit
(``randomness.deterministic=True``; RNG states restored by RNGStateHook).

``--ablations`` adds runs with the fixes switched off: mmengine's own
checkpoint save/resume (``MERGEMIX_UNSAFE_CHECKPOINTS=1``) under the ``save``
and ``truncate_latest`` faults, and ``RNGStateHook`` disabled under the
``train_iter`` fault.

Writes ``benchmarks/results/reliability_kill_resume.{md,json}``.

Example::

    python tools/reliability/kill_resume_loop.py --trials 30 --ablations
"""
import argparse
import json
import os
import os.path as osp
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.abspath(osp.join(HERE, '..', '..'))
WRAPPER = osp.join(HERE, 'train_with_faults.py')
CONFIG = osp.join(ROOT, 'configs', 'demo',
                  'vit-tiny_1xb64-mergemix_digits-32px.py')
EPOCHS = 3
ITERS_PER_EPOCH = 4  # 128 training images, batch 32
VAL_ITERS = 4  # 64 test images, batch 16
#: Shrinks the demo so that one run takes seconds on 2 cores.
SMALL = [
    'train_dataloader.batch_size=32', 'train_dataloader.dataset.indices=128',
    'val_dataloader.batch_size=16', 'val_dataloader.dataset.indices=64',
    f'train_cfg.max_epochs={EPOCHS}', 'train_cfg.val_interval=1',
    'default_hooks.logger.interval=1', 'randomness.seed=0',
    'randomness.deterministic=True'
]
FAULTS = ('train_iter', 'val', 'save', 'random_time', 'truncate_latest')


def env(extra: Optional[Dict[str, str]] = None) -> dict:
    out = dict(os.environ)
    out['PYTHONPATH'] = ROOT + os.pathsep + out.get('PYTHONPATH', '')
    out.setdefault('OMP_NUM_THREADS', '1')
    for key in ('MERGEMIX_FAULTS', 'MERGEMIX_RECORD',
                'MERGEMIX_UNSAFE_CHECKPOINTS'):
        out.pop(key, None)
    out.update(extra or {})
    return out


def train_cmd(work_dir: str, *extra: str, config: str = CONFIG,
              options: Optional[List[str]] = None) -> List[str]:
    return [
        sys.executable, WRAPPER, config, '--work-dir', work_dir, *extra,
        '--cfg-options', *SMALL, *(options or [])
    ]


def run(work_dir: str, *extra: str, faults: Optional[dict] = None,
        kill_after: Optional[float] = None, unsafe: bool = False,
        options: Optional[List[str]] = None, timeout: float = 900) -> dict:
    """Run the wrapper once; return rc, wall time and the output."""
    os.makedirs(work_dir, exist_ok=True)
    extra_env = {}
    if faults:
        extra_env['MERGEMIX_FAULTS'] = json.dumps(faults)
    if unsafe:
        extra_env['MERGEMIX_UNSAFE_CHECKPOINTS'] = '1'
    log_path = osp.join(work_dir, f'run_{time.time_ns()}.out')
    start = time.time()
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            train_cmd(work_dir, *extra, options=options),
            stdout=log, stderr=subprocess.STDOUT, env=env(extra_env),
            cwd=ROOT)
        try:
            proc.wait(timeout=kill_after if kill_after else timeout)
        except subprocess.TimeoutExpired:
            if kill_after is None:
                proc.kill()
                raise
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    with open(log_path) as f:
        out = f.read()
    return dict(rc=proc.returncode, wall=time.time() - start, out=out)


def scan_checkpoints(work_dir: str):
    """Epochs whose ``epoch_N.pth`` passes / fails the validation."""
    from mergemix_mm.utils.checkpoint_safety import (CheckpointCorruptError,
                                                     check_checkpoint)
    good, bad = [], []
    for name in os.listdir(work_dir):
        m = re.match(r'^epoch_(\d+)\.pth$', name)
        if not m:
            continue
        try:
            check_checkpoint(osp.join(work_dir, name))
        except CheckpointCorruptError:
            bad.append(int(m.group(1)))
            continue
        good.append(int(m.group(1)))
    return sorted(good), sorted(bad)


def truncate_latest(work_dir: str, rng: random.Random) -> Optional[str]:
    """Truncate the checkpoint ``last_checkpoint`` names; return its path."""
    record = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(record):
        return None
    with open(record) as f:
        path = f.read().strip()
    if not osp.isfile(path):
        return None
    size = osp.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(int(size * rng.uniform(0.0, 0.99)))
    return path


def final_state(work_dir: str):
    import torch
    path = osp.join(work_dir, f'epoch_{EPOCHS}.pth')
    if not osp.isfile(path):
        return None
    return torch.load(path, map_location='cpu', weights_only=False)


def compare(ref, got) -> dict:
    """Final epoch/iter and max abs weight difference."""
    if got is None:
        return dict(finished=False, epoch=None, iter=None, max_diff=None,
                    identical=False)
    diffs = [(ref['state_dict'][k].double() -
              got['state_dict'][k].double()).abs().max().item()
             for k in ref['state_dict']]
    max_diff = max(diffs) if diffs else 0.0
    return dict(
        finished=True,
        epoch=got['meta']['epoch'],
        iter=got['meta']['iter'],
        max_diff=max_diff,
        identical=max_diff == 0.0)


def draw_fault(kind: str, rng: random.Random, ref_wall: float) -> dict:
    total = EPOCHS * ITERS_PER_EPOCH
    if kind == 'train_iter':
        return dict(faults=dict(kill_at_iter=rng.randint(2, total)))
    if kind == 'val':
        return dict(faults=dict(
            kill_in_val=[rng.randint(1, EPOCHS), rng.randint(1, VAL_ITERS)]))
    if kind == 'save':
        return dict(faults=dict(kill_in_save=rng.randint(1, EPOCHS)))
    if kind == 'random_time':
        return dict(kill_after=round(rng.uniform(1.0, ref_wall), 2))
    if kind == 'truncate_latest':  # killed in the last epoch: 2 checkpoints
        first = (EPOCHS - 1) * ITERS_PER_EPOCH + 1
        return dict(faults=dict(kill_at_iter=rng.randint(first, total)))
    raise ValueError(f'unknown fault kind {kind!r}; choose from {FAULTS}')


def resumed_from(out: str) -> Optional[int]:
    m = re.search(r'resumed epoch: (\d+), iter: (\d+)', out)
    return int(m.group(1)) if m else (0 if 'starts from scratch' in out
                                      or 'Did not find' in out else None)


def trial(kind: str, work_dir: str, ref, ref_wall: float, rng: random.Random,
          unsafe: bool = False, options: Optional[List[str]] = None) -> dict:
    """One kill + resume; returns the measurements."""
    spec = draw_fault(kind, rng, ref_wall)
    for _ in range(4):
        shutil.rmtree(work_dir, ignore_errors=True)
        first = run(work_dir, unsafe=unsafe, options=options, **spec)
        killed = first['rc'] in (-signal.SIGKILL, 128 + signal.SIGKILL)
        if killed or kind != 'random_time':
            break
        # The run finished before the kill (the machine was faster than
        # during the reference run): draw again within this run's length.
        spec = dict(kill_after=round(rng.uniform(1.0, 0.95 * first['wall']),
                                     2))
    truncated = truncate_latest(work_dir, rng) \
        if kind == 'truncate_latest' else None
    on_disk, bad_on_disk = scan_checkpoints(work_dir)
    second = run(work_dir, '--resume', unsafe=unsafe, options=options)
    res_epoch = resumed_from(second['out'])
    cmp = compare(ref, final_state(work_dir)) if second['rc'] == 0 else \
        compare(ref, None)
    newest = max(on_disk) if on_disk else 0
    error = None
    if second['rc'] != 0:
        lines = [ln for ln in second['out'].strip().splitlines() if ln]
        error = lines[-1][:400] if lines else 'no output'
    return dict(
        kind=kind,
        fault=spec,
        killed=killed,
        first_rc=first['rc'],
        truncated=truncated,
        good_checkpoints_before_resume=on_disk,
        bad_checkpoints_before_resume=bad_on_disk,
        resume_rc=second['rc'],
        resumed_epoch=res_epoch,
        lost_finished_epochs=(None if res_epoch is None else
                              max(0, newest - res_epoch)),
        fallback_warning='falling back to the previous good' in second['out'],
        error=error,
        **cmp)


def summarise(trials: List[dict], ref_meta: dict) -> List[dict]:
    rows = []
    groups = {}
    for t in trials:
        groups.setdefault((t['group'], t['kind']), []).append(t)
    for (group, kind), ts in groups.items():
        ok = [t for t in ts if t['resume_rc'] == 0 and t['finished']]
        same_len = [t for t in ok if t['epoch'] == ref_meta['epoch']
                    and t['iter'] == ref_meta['iter']]
        diffs = [t['max_diff'] for t in ok if t['max_diff'] is not None]
        rows.append(dict(
            group=group,
            fault=kind,
            runs=len(ts),
            killed=sum(t['killed'] for t in ts),
            resumed_ok=len(ok),
            same_epochs_iters=len(same_len),
            identical_weights=sum(t['identical'] for t in ok),
            max_weight_diff=max(diffs) if diffs else None,
            lost_finished_epochs=sum(t['lost_finished_epochs'] or 0
                                     for t in ts),
            fallbacks=sum(t['fallback_warning'] for t in ts),
            bad_files=sum(len(t['bad_checkpoints_before_resume'])
                          for t in ts),
            errors=sorted({t['error'] for t in ts if t['error']})[:3]))
    return rows


def versions() -> dict:
    from importlib import metadata
    out = dict(python=platform.python_version())
    for name in ('torch', 'mmengine', 'mmpretrain', 'numpy'):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = 'not installed'
    return out


def write_results(out_dir: str, payload: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'reliability_kill_resume.json'), 'w') as f:
        json.dump(payload, f, indent=1)
    lines = [
        '# Kill and resume (SIGKILL at random points)', '',
        f'Command: `{payload["command"]}`', '',
        f'Config: `{osp.relpath(CONFIG, ROOT)}` shrunk to {EPOCHS} epochs x '
        f'{ITERS_PER_EPOCH} iterations (128 train / 64 val images), seed 0, '
        '`randomness.deterministic=True`, CPU. Reference: one uninterrupted '
        f'run, final epoch {payload["reference"]["epoch"]}, iteration '
        f'{payload["reference"]["iter"]}, {payload["reference"]["wall"]:.1f} '
        's.', '',
        f'Hardware: {payload["hardware"]}; versions: '
        + ', '.join(f'{k} {v}' for k, v in payload['versions'].items()), '',
        '| setting | fault | runs | killed | resumed OK | same epochs+iters '
        '| identical final weights | max abs weight diff | lost finished '
        'epochs | fallback warnings | corrupt files before resume |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'
    ]
    for r in payload['summary']:
        diff = 'n/a' if r['max_weight_diff'] is None else \
            f'{r["max_weight_diff"]:.3g}'
        lines.append(
            f'| {r["group"]} | {r["fault"]} | {r["runs"]} | {r["killed"]} '
            f'| {r["resumed_ok"]}/{r["runs"]} | {r["same_epochs_iters"]} | '
            f'{r["identical_weights"]} | {diff} | '
            f'{r["lost_finished_epochs"]} | {r["fallbacks"]} | '
            f'{r["bad_files"]} |')
    errors = [(r['group'], r['fault'], e) for r in payload['summary']
              for e in r['errors']]
    if errors:
        lines += ['', 'Errors of failed resumes (last line of the output):',
                  '']
        lines += [f'- {g} / {k}: `{e}`' for g, k, e in errors]
    lines += [
        '', '"killed": the first run died by SIGKILL (a `random_time` kill '
        'after the run had finished counts as not killed). "lost finished '
        'epochs": complete, valid checkpoints on disk that the resume did not '
        'use. Per-trial details are in the JSON file.', ''
    ]
    with open(osp.join(out_dir, 'reliability_kill_resume.md'), 'w') as f:
        f.write('\n'.join(lines))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--trials', type=int, default=30,
                        help='kill+resume trials (faults round-robin)')
    parser.add_argument('--faults', nargs='+', default=list(FAULTS),
                        choices=FAULTS)
    parser.add_argument('--ablations', action='store_true',
                        help='also run with the fixes switched off')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--work-root', default=osp.join(
        ROOT, 'work_dirs', 'reliability_kill_resume'))
    parser.add_argument('--out-dir', default=osp.join(ROOT, 'benchmarks',
                                                      'results'))
    args = parser.parse_args(argv)
    from tqdm import tqdm

    rng = random.Random(args.seed)
    ref_dir = osp.join(args.work_root, 'reference')
    shutil.rmtree(ref_dir, ignore_errors=True)
    ref_run = run(ref_dir)
    if ref_run['rc'] != 0:
        raise SystemExit('reference run failed:\n' + ref_run['out'][-3000:])
    ref = final_state(ref_dir)
    plan = [('fixed', args.faults[i % len(args.faults)], False, None)
            for i in range(args.trials)]
    if args.ablations:
        plan += [('mmengine save/resume (no fix)', 'save', True, None)] * 3
        plan += [('mmengine save/resume (no fix)', 'truncate_latest', True,
                  None)] * 3
        plan += [('RNGStateHook off', 'train_iter', False,
                  ['default_hooks.rng_state.enable=False'])] * 3
    refs = {None: ref}
    trials = []
    for group, kind, unsafe, options in tqdm(plan, desc='kill/resume'):
        key = tuple(options) if options else None
        if key not in refs:
            alt_dir = osp.join(args.work_root, 'reference_' + str(len(refs)))
            shutil.rmtree(alt_dir, ignore_errors=True)
            alt = run(alt_dir, options=options)
            refs[key] = final_state(alt_dir) if alt['rc'] == 0 else None
        t = trial(kind, osp.join(args.work_root, 'trial'), refs[key],
                  ref_run['wall'], rng, unsafe=unsafe, options=options)
        t['group'] = group
        trials.append(t)
    ref_meta = dict(epoch=ref['meta']['epoch'], iter=ref['meta']['iter'],
                    wall=ref_run['wall'])
    payload = dict(
        command='python tools/reliability/kill_resume_loop.py ' +
        ' '.join(argv if argv is not None else sys.argv[1:]),
        hardware=f'{platform.machine()}, {os.cpu_count()} CPU cores',
        versions=versions(),
        reference=ref_meta,
        summary=summarise(trials, ref_meta),
        trials=trials)
    write_results(args.out_dir, payload)
    return payload


if __name__ == '__main__':
    main()
