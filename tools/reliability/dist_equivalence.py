"""Distributed equivalence and failure behaviour on CPU (gloo).

1. **Loss curves.** For each method (no mixing, Mixup, MergeMix) train the
   digits demo once with 1 process at batch ``2B`` and once with 2 processes
   (``torchrun``, gloo) at batch ``B`` per process, same seed, the same data
   in the same order (``DefaultSampler(shuffle=False)``, no random crop, no
   drop-path), and compare the per-iteration loss: the 1-process loss with
   the mean of the two ranks' losses. Without mixing the global batch, the
   averaged gradient and therefore every step are the same up to float
   summation order. With mixing the pairing is drawn *per process* (a
   sample is only mixed with a partner of its own rank's half-batch), so the
   curves agree only statistically; as a scale for "statistically", the
   1-process run is repeated with a different seed for the *mixing only*
   (``MERGEMIX_MIX_SEED``: the generators are re-seeded after the model is
   built).
2. **A failing rank.** Rank 1 raises at iteration 3: the job must stop (not
   hang) and the output must carry rank 1's error.
3. **Skipped NaN step under DDP.** With ``nonfinite_guard.action='skip'`` a
   NaN loss on rank 1 only must make *both* ranks skip the step (otherwise
   DDP hangs) and the run must finish.
4. **Kill and resume under DDP.** A 2-process MergeMix run is SIGKILLed on
   rank 1 in its second epoch (torchrun then stops rank 0), resumed with
   ``--resume``, and its final weights are compared with an uninterrupted
   2-process run (RNGStateHook stores both ranks' generator states).

Writes ``benchmarks/results/reliability_distributed.{md,json}``.

Example::

    python tools/reliability/dist_equivalence.py
"""
import argparse
import json
import os
import os.path as osp
import platform
import shutil
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.abspath(osp.join(HERE, '..', '..'))
WRAPPER = osp.join(HERE, 'train_with_faults.py')
DEMO = osp.join(ROOT, 'configs', 'demo',
                'vit-tiny_1xb64-mergemix_digits-32px.py')
PER_RANK_BATCH = 16
TRAIN_SIZE = 256  # 8 iterations per epoch at a global batch of 32
EPOCHS = 3
METHODS = {
    'none': '[]',
    'mixup': "[dict(type='Mixup', alpha=0.8)]",
    'mergemix': ("[dict(type='MergeMix', alpha=1.0, attn_layer=2, "
                 "merge_num=32, lam_scale=False, lam_reduction='batch')]"),
}


def write_config(path: str, method: str) -> str:
    """A child of the demo config: fixed data order, no random crop, no
    drop-path, a constant learning rate (so that the few iterations do
    train), ``method``'s augments."""
    text = f"""_base_ = [{DEMO!r}]
model = dict(
    backbone=dict(drop_path_rate=0.0),
    train_cfg=dict(augments={METHODS[method]}))
train_dataloader = dict(
    batch_size={PER_RANK_BATCH},
    dataset=dict(indices={TRAIN_SIZE}, pipeline=[dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=False))
train_cfg = dict(max_epochs={EPOCHS}, val_interval={EPOCHS})
default_hooks = dict(logger=dict(interval=1))
param_scheduler = []  # constant lr=1e-3 (no 2-epoch warm-up)
randomness = dict(seed=0, deterministic=True)
"""
    with open(path, 'w') as f:
        f.write(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def env(extra: Optional[Dict[str, str]] = None) -> dict:
    out = dict(os.environ)
    out['PYTHONPATH'] = ROOT + os.pathsep + out.get('PYTHONPATH', '')
    out['OMP_NUM_THREADS'] = '1'
    for key in ('MERGEMIX_FAULTS', 'MERGEMIX_RECORD'):
        out.pop(key, None)
    out.update(extra or {})
    return out


def train(config: str, work_dir: str, nproc: int, record: str,
          options: Optional[List[str]] = None,
          faults: Optional[dict] = None, timeout: float = 900,
          extra_args: Optional[List[str]] = None) -> dict:
    """Run the wrapper with 1 process, or ``nproc`` via torchrun."""
    if nproc == 1:
        cmd = [sys.executable, WRAPPER, config]
    else:
        cmd = [
            sys.executable, '-m', 'torch.distributed.run',
            f'--nproc_per_node={nproc}', f'--master_port={free_port()}',
            WRAPPER, config, '--launcher', 'pytorch'
        ]
    cmd += ['--work-dir', work_dir, '--no-validate', *(extra_args or [])]
    if options:
        cmd += ['--cfg-options', *options]
    extra = dict(MERGEMIX_RECORD=record)
    if faults:
        extra['MERGEMIX_FAULTS'] = json.dumps(faults)
    start = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env=env(extra), cwd=ROOT, timeout=timeout)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        rc = 'timeout'
        out = (err.stdout or b'').decode() + (err.stderr or b'').decode() \
            if isinstance(err.stdout, bytes) else str(err.stdout or '')
    return dict(rc=rc, out=out, wall=time.time() - start, cmd=cmd)


def load_losses(record: str) -> List[List[float]]:
    """Per-rank loss lists, ordered by rank."""
    ranks = []
    for name in sorted(os.listdir(record)):
        if name.startswith('loss_rank'):
            with open(osp.join(record, name)) as f:
                data = json.load(f)
            ranks.append((data['rank'], [r['loss'] for r in data['records']],
                          [r['sample_idx'] for r in data['records']]))
    return [r[1:] for r in sorted(ranks)]


def curve_stats(a: List[float], b: List[float]) -> dict:
    diffs = [abs(x - y) for x, y in zip(a, b)]
    n = len(diffs)
    half = n // EPOCHS
    epoch_means = [(sum(a[i * half:(i + 1) * half]) / half,
                    sum(b[i * half:(i + 1) * half]) / half)
                   for i in range(EPOCHS)]
    return dict(
        iterations=n,
        max_abs_diff=max(diffs),
        mean_abs_diff=sum(diffs) / n,
        epoch_mean_diff=[abs(x - y) for x, y in epoch_means])


def compare_method(method: str, work_root: str) -> dict:
    cfg = write_config(osp.join(work_root, f'{method}.py'), method)
    runs = {}
    specs = {
        'one_proc': (1, [f'train_dataloader.batch_size={2 * PER_RANK_BATCH}'],
                     None),
        'two_proc': (2, None, None),
    }
    if method != 'none':
        specs['one_proc_other_mix_seed'] = (
            1, [f'train_dataloader.batch_size={2 * PER_RANK_BATCH}'], '1')
    for name, (nproc, options, mix_seed) in specs.items():
        work = osp.join(work_root, f'{method}_{name}')
        shutil.rmtree(work, ignore_errors=True)
        record = osp.join(work, 'record')
        if mix_seed is not None:
            os.environ['MERGEMIX_MIX_SEED'] = mix_seed
        try:
            res = train(cfg, work, nproc, record, options)
        finally:
            os.environ.pop('MERGEMIX_MIX_SEED', None)
        if res['rc'] != 0:
            raise RuntimeError(f'{method}/{name} failed (rc={res["rc"]}):\n'
                               + res['out'][-4000:])
        runs[name] = dict(ranks=load_losses(record), wall=res['wall'])
    one = runs['one_proc']['ranks'][0][0]
    two_ranks = runs['two_proc']['ranks']
    two = [sum(v) / len(v) for v in zip(*[r[0] for r in two_ranks])]
    # The same samples in every global batch?
    same_data = all(
        sorted(s1) == sorted(s2a + s2b) for s1, s2a, s2b in zip(
            runs['one_proc']['ranks'][0][1], two_ranks[0][1],
            two_ranks[1][1]))
    result = dict(
        method=method,
        same_global_batches=same_data,
        one_proc=one,
        two_proc_mean=two,
        two_proc_ranks=[r[0] for r in two_ranks],
        one_vs_two=curve_stats(one, two),
        wall=dict((k, v['wall']) for k, v in runs.items()))
    if 'one_proc_other_mix_seed' in runs:
        other = runs['one_proc_other_mix_seed']['ranks'][0][0]
        result['one_proc_other_mix_seed'] = other
        result['one_vs_other_mix_seed'] = curve_stats(one, other)
    return result


def failing_rank(work_root: str) -> dict:
    cfg = write_config(osp.join(work_root, 'fail.py'), 'mergemix')
    work = osp.join(work_root, 'fail')
    shutil.rmtree(work, ignore_errors=True)
    res = train(cfg, work, 2, osp.join(work, 'record'),
                faults=dict(raise_at_iter=3, raise_rank=1), timeout=300)
    return dict(
        rc=res['rc'],
        wall=res['wall'],
        stopped=res['rc'] not in (0, 'timeout'),
        rank_error_in_output=('injected failure on rank 1 at iteration 3'
                              in res['out']),
        output_tail=res['out'][-1500:])


def nan_skip_on_one_rank(work_root: str) -> dict:
    cfg = write_config(osp.join(work_root, 'nan.py'), 'none')
    work = osp.join(work_root, 'nan_skip')
    shutil.rmtree(work, ignore_errors=True)
    record = osp.join(work, 'record')
    res = train(cfg, work, 2, record,
                options=['default_hooks.nonfinite_guard.action=skip'],
                faults=dict(nan_at_iter=5, nan_rank=1), timeout=300)
    out = dict(rc=res['rc'], wall=res['wall'],
               finished=res['rc'] == 0,
               skip_logged=res['out'].count('Skipped training step'))
    if res['rc'] == 0:
        ranks = load_losses(record)
        out['iterations_per_rank'] = [len(r[0]) for r in ranks]
    else:
        out['output_tail'] = res['out'][-1500:]
    return out


def kill_resume_2proc(work_root: str) -> dict:
    """SIGKILL rank 1 at iteration 12 (epoch 2), resume, compare weights."""
    import re

    import torch
    cfg = write_config(osp.join(work_root, 'kill.py'), 'mergemix')
    out = {}
    for name in ('reference', 'killed'):
        work = osp.join(work_root, f'kill_{name}')
        shutil.rmtree(work, ignore_errors=True)
        faults = dict(kill_at_iter=12, kill_rank=1) if name == 'killed' \
            else None
        res = train(cfg, work, 2, osp.join(work, 'record'), faults=faults,
                    timeout=600)
        out[f'{name}_rc'] = res['rc']
        if name == 'killed':
            out['killed_wall'] = res['wall']
            resumed = train(cfg, work, 2, osp.join(work, 'record_resumed'),
                            extra_args=['--resume'], timeout=600)
            out['resume_rc'] = resumed['rc']
            m = re.search(r'resumed epoch: (\d+), iter: (\d+)',
                          resumed['out'])
            out['resumed_from'] = [int(m.group(1)), int(m.group(2))] \
                if m else None
    ref_path = osp.join(work_root, 'kill_reference', f'epoch_{EPOCHS}.pth')
    path = osp.join(work_root, 'kill_killed', f'epoch_{EPOCHS}.pth')
    if out.get('resume_rc') == 0 and osp.isfile(path) and \
            osp.isfile(ref_path):
        ref = torch.load(ref_path, map_location='cpu', weights_only=False)
        got = torch.load(path, map_location='cpu', weights_only=False)
        out['rng_states_in_checkpoint'] = len(got.get('rng_states', []))
        out['final'] = [got['meta']['epoch'], got['meta']['iter']]
        out['reference_final'] = [ref['meta']['epoch'], ref['meta']['iter']]
        out['max_abs_weight_diff'] = max(
            (ref['state_dict'][k].double() -
             got['state_dict'][k].double()).abs().max().item()
            for k in ref['state_dict'])
    return out


def versions() -> dict:
    from importlib import metadata
    out = dict(python=platform.python_version())
    for name in ('torch', 'mmengine', 'mmpretrain'):
        out[name] = metadata.version(name)
    return out


def write_results(out_dir: str, payload: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'reliability_distributed.json'), 'w') as f:
        json.dump(payload, f, indent=1)
    lines = [
        '# Distributed equivalence on CPU (gloo)', '',
        f'Command: `{payload["command"]}`', '',
        f'Digits demo ({TRAIN_SIZE} training images, {EPOCHS} epochs, '
        f'{TRAIN_SIZE // (2 * PER_RANK_BATCH)} iterations per epoch), '
        'AdamW at a constant lr 1e-3, '
        'no random crop, no drop-path, `DefaultSampler(shuffle=False)`, '
        'seed 0, deterministic. 1 process at batch '
        f'{2 * PER_RANK_BATCH} vs 2 processes (torchrun, gloo) at batch '
        f'{PER_RANK_BATCH} each; the 2-process loss is the mean of the '
        'ranks\' losses.', '',
        f'Hardware: {payload["hardware"]}; versions: '
        + ', '.join(f'{k} {v}' for k, v in payload['versions'].items()), '',
        '| method | same global batches | max abs diff 1p vs 2p | mean abs '
        'diff 1p vs 2p | per-epoch mean diff 1p vs 2p | 1p vs 1p (other '
        'mixing seed): mean abs diff | per-epoch mean diff |',
        '| --- | --- | --- | --- | --- | --- | --- |'
    ]
    for r in payload['methods']:
        s = r['one_vs_two']
        o = r.get('one_vs_other_mix_seed')
        lines.append(
            f'| {r["method"]} | {r["same_global_batches"]} | '
            f'{s["max_abs_diff"]:.2e} | {s["mean_abs_diff"]:.2e} | '
            + ', '.join(f'{d:.3f}' for d in s['epoch_mean_diff']) + ' | '
            + (f'{o["mean_abs_diff"]:.2e} | ' + ', '.join(
                f'{d:.3f}' for d in o['epoch_mean_diff']) if o else
               'n/a | n/a') + ' |')
    f = payload['failing_rank']
    n = payload['nan_skip']
    lines += [
        '', '## Failures', '',
        f'- Rank 1 raises at iteration 3: exit code {f["rc"]} after '
        f'{f["wall"]:.1f} s (stopped: {f["stopped"]}; rank 1\'s error in the '
        f'output: {f["rank_error_in_output"]}).',
        f'- NaN loss on rank 1 only at iteration 5 with '
        f'`nonfinite_guard.action=\'skip\'`: exit code {n["rc"]}, '
        f'{n["skip_logged"]} "Skipped training step" log line(s), '
        f'iterations recorded per rank: {n.get("iterations_per_rank")}.',
    ]
    k = payload.get('kill_resume')
    if k:
        lines += [
            f'- MergeMix, 2 processes, rank 1 SIGKILLed before iteration 12 '
            f'(epoch 2): first run exit code {k.get("killed_rc")}; resume '
            f'exit code {k.get("resume_rc")}, resumed from [epoch, iter] '
            f'{k.get("resumed_from")}; final {k.get("final")} vs '
            'uninterrupted '
            f'{k.get("reference_final")}; max abs weight difference '
            f'{k.get("max_abs_weight_diff")}; generator states stored for '
            f'{k.get("rng_states_in_checkpoint")} ranks.'
        ]
    lines.append('')
    with open(osp.join(out_dir, 'reliability_distributed.md'), 'w') as fh:
        fh.write('\n'.join(lines))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--methods', nargs='+', default=list(METHODS),
                        choices=list(METHODS))
    parser.add_argument('--work-root', default=osp.join(
        ROOT, 'work_dirs', 'reliability_distributed'))
    parser.add_argument('--out-dir', default=osp.join(ROOT, 'benchmarks',
                                                      'results'))
    args = parser.parse_args(argv)
    from tqdm import tqdm
    os.makedirs(args.work_root, exist_ok=True)
    methods = [compare_method(m, args.work_root)
               for m in tqdm(args.methods, desc='methods')]
    payload = dict(
        command='python tools/reliability/dist_equivalence.py ' +
        ' '.join(argv if argv is not None else sys.argv[1:]),
        hardware=f'{platform.machine()}, {os.cpu_count()} CPU cores',
        versions=versions(),
        methods=methods,
        failing_rank=failing_rank(args.work_root),
        nan_skip=nan_skip_on_one_rank(args.work_root),
        kill_resume=kill_resume_2proc(args.work_root))
    write_results(args.out_dir, payload)
    return payload


if __name__ == '__main__':
    main()
