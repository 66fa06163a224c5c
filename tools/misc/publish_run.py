"""Publish the evidence of a training run: its json log, final metrics and
the SHA-256 of its checkpoint, as a results row.

mmengine writes ``WORK_DIR/<timestamp>/vis_data/<timestamp>.json`` (one json
object per logged iteration / validation) and ``<timestamp>.log``. This tool
copies the json log of the latest run in ``WORK_DIR`` to
``OUT/<name>.log.json``, hashes the checkpoint named in
``WORK_DIR/last_checkpoint`` (or ``--checkpoint``), writes
``OUT/<name>.json`` and regenerates ``OUT/README.md``: one table row per
published run with the config, top-1, wall time, log and checkpoint hash.
Checkpoints themselves are not copied (they are large). Two hashes are
recorded: of the checkpoint file (to check a file you received) and of its
weights only (to check a run you re-created; the file also stores the time
and config text, so its own hash differs between identical runs).

Usage::

    python tools/train.py \\
        configs/demo/vit-tiny_1xb64-mergemix_digits-32px.py \\
        --work-dir work_dirs/demo
    python tools/misc/publish_run.py work_dirs/demo \\
        --config configs/demo/vit-tiny_1xb64-mergemix_digits-32px.py
"""
import argparse
import datetime
import glob
import hashlib
import json
import os
import os.path as osp
import re
import shutil
import sys
from typing import List, Optional, Tuple

# like the other tools: the clone's package, also without `pip install -e .`
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mergemix_mm.utils.checkpoint_safety import (  # noqa: E402
    atomic_write_text)
from mergemix_mm.utils.jsonl import read_jsonl  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
DEFAULT_OUT = osp.join(ROOT, 'benchmarks', 'results', 'runs')
_TIME_FMT = '%Y/%m/%d %H:%M:%S'


def sha256sum(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def _load_checkpoint(path: str):
    """A *local* checkpoint, loaded with pickle (only use it on files you
    trust, e.g. your own runs)."""
    import torch
    return torch.load(path, map_location='cpu', weights_only=False)


def weights_sha256(path: str, ckpt=None) -> str:
    """SHA-256 over a checkpoint's ``state_dict`` only: parameter names,
    dtypes, shapes and values in key order.

    mmengine checkpoints also store the time, config text and experiment
    name, so two runs with bit-identical weights have different file hashes;
    this hash is equal for them. Loads a *local* checkpoint with pickle
    (only use it on files you trust, e.g. your own runs).

    Args:
        path (str): The checkpoint.
        ckpt (object, optional): ``path`` already loaded. Defaults to None.
    """
    import torch
    if ckpt is None:
        ckpt = _load_checkpoint(path)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        if not torch.is_tensor(value):
            continue
        value = value.detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(value.dtype).encode())
        digest.update(str(tuple(value.shape)).encode())
        # flattened first: a 0-d tensor (e.g. BatchNorm's
        # num_batches_tracked) cannot be viewed as bytes; for the others
        # the bytes are the same
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes()
                      if value.numel() else b'')
    return digest.hexdigest()


def runs_with_log(work_dir: str) -> List[str]:
    """Timestamp folders of the runs in ``work_dir`` that have a json log,
    oldest first.

    Raises:
        FileNotFoundError: If no ``<timestamp>/vis_data/<timestamp>.json``
            exists in ``work_dir``.
    """
    runs = sorted(
        d for d in glob.glob(osp.join(work_dir, '*'))
        if osp.isfile(osp.join(d, 'vis_data',
                               osp.basename(d) + '.json')))
    if not runs:
        raise FileNotFoundError(
            f'work_dir={work_dir!r} holds no mmengine run with a json log '
            '(expected <timestamp>/vis_data/<timestamp>.json)')
    return runs


_RESUMED = re.compile(r'resumed epoch: (\d+), iter: (\d+)')


def _text_log(run: str) -> str:
    path = osp.join(run, osp.basename(run) + '.log')
    if not osp.isfile(path):
        return ''
    with open(path, errors='replace') as f:
        return f.read()


def run_segments(work_dir: str) -> List[Tuple[str, Optional[tuple]]]:
    """The runs of ``work_dir`` that make up its latest training, oldest
    first: the latest run and, when it was resumed (``--resume``), the run
    that saved the checkpoint it resumed from, and so on back.

    Returns:
        list[tuple]: ``(run folder, cut)``; ``cut`` is None for the latest
        run, else ``(by_epoch, epoch, iter)`` of the checkpoint the next
        segment resumed from (records after it were redone there).
    """
    runs = runs_with_log(work_dir)
    segments = [(runs[-1], None)]
    index = len(runs) - 1
    while True:
        found = _RESUMED.search(_text_log(runs[index]))
        if not found:
            break
        epoch, it = int(found.group(1)), int(found.group(2))
        saved = re.compile(rf'Saving checkpoint at (?:({epoch}) epochs|'
                           rf'{it} iterations)\b')
        for prev in range(index - 1, -1, -1):
            match = saved.search(_text_log(runs[prev]))
            if match:
                segments.insert(0, (runs[prev],
                                    (match.group(1) is not None, epoch, it)))
                index = prev
                break
        else:  # resumed from a checkpoint of another work dir
            break
    return segments


def _cut_records(records: List[dict], cut: tuple) -> List[dict]:
    """The records of a segment up to the checkpoint the next one resumed
    from (training steps up to its iteration; validations up to its epoch,
    or iteration for iteration-based runs)."""
    by_epoch, epoch, it = cut
    last_val = epoch if by_epoch else it
    kept = []
    for r in records:
        if 'iter' in r:
            keep = r['iter'] <= it
        else:
            keep = r.get('step', 0) <= last_val
        if keep:
            kept.append(r)
    return kept


def read_json_log(path: str) -> List[dict]:
    """Records of an mmengine json log (one object per line)."""
    return read_jsonl(path, name='json log')


def wall_time_s(text_log: str) -> Optional[float]:
    """Seconds between the first and the last timestamped line of an
    mmengine text log (None when it has fewer than two)."""
    stamps = []
    with open(text_log, errors='replace') as f:
        for line in f:
            try:
                stamps.append(
                    datetime.datetime.strptime(line[:19], _TIME_FMT))
            except ValueError:
                continue
    if len(stamps) < 2:
        return None
    return (stamps[-1] - stamps[0]).total_seconds()


def checkpoint_of(work_dir: str, checkpoint: Optional[str]) -> str:
    """The checkpoint to hash: ``checkpoint`` or the one in
    ``work_dir/last_checkpoint``."""
    if checkpoint is None:
        pointer = osp.join(work_dir, 'last_checkpoint')
        if not osp.isfile(pointer):
            raise FileNotFoundError(
                f'{pointer} does not exist; pass --checkpoint')
        with open(pointer) as f:
            checkpoint = f.read().strip()
        if not osp.isabs(checkpoint) and not osp.isfile(checkpoint):
            checkpoint = osp.join(work_dir, osp.basename(checkpoint))
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint!r} does not exist')
    return checkpoint


def publish(work_dir: str,
            config: str,
            out: str = DEFAULT_OUT,
            name: Optional[str] = None,
            checkpoint: Optional[str] = None,
            command: Optional[str] = None) -> dict:
    """Copy the log, hash the checkpoint, write the record and the index.

    Returns:
        dict: The record written to ``OUT/<name>.json``.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config={config!r} does not exist')
    segments = run_segments(work_dir)
    run = segments[-1][0]
    stamp = osp.basename(run)
    json_log = osp.join(run, 'vis_data', stamp + '.json')
    records, walls = [], []
    for seg, cut in segments:  # a resumed run: every segment, in order
        seg_records = read_json_log(
            osp.join(seg, 'vis_data', osp.basename(seg) + '.json'))
        records += seg_records if cut is None else _cut_records(
            seg_records, cut)
        walls.append(
            wall_time_s(osp.join(seg, osp.basename(seg) + '.log')))
    vals = [r for r in records if 'accuracy/top1' in r]
    if not vals:
        raise ValueError(f'{json_log} has no accuracy/top1 record; did the '
                         'run validate?')
    trains = [r for r in records if 'loss' in r]
    ckpt = checkpoint_of(work_dir, checkpoint)
    name = name or osp.splitext(osp.basename(config))[0]
    log_copy = osp.join(out, f'{name}.log.json')
    # the checkpoint's own counts: the log skips an epoch's last iteration
    # when it is not a multiple of the logging interval
    loaded = _load_checkpoint(ckpt)
    meta = loaded.get('meta', {}) if isinstance(loaded, dict) else {}
    last = trains[-1] if trains else {}
    record = dict(
        name=name,
        config=osp.relpath(osp.abspath(config), ROOT),
        command=command,
        run=stamp,
        top1=vals[-1]['accuracy/top1'],
        top1_by_val=[v['accuracy/top1'] for v in vals],
        epochs=meta.get('epoch', last.get('epoch')),
        iterations=meta.get('iter', last.get('iter')),
        wall_time_s=(None if any(w is None for w in walls) else
                     sum(walls)),
        log=osp.basename(log_copy),
        checkpoint=osp.basename(ckpt),
        checkpoint_bytes=osp.getsize(ckpt),
        checkpoint_sha256=sha256sum(ckpt),
        weights_sha256=weights_sha256(ckpt, loaded))
    # nothing is written before every field is known
    os.makedirs(out, exist_ok=True)
    if len(segments) == 1:
        shutil.copyfile(json_log, log_copy)
    else:
        atomic_write_text(''.join(json.dumps(r) + '\n' for r in records),
                          log_copy)
    if len(segments) > 1:  # resumed: the runs the log and times cover
        record['runs'] = [osp.basename(seg) for seg, _ in segments]
    atomic_write_text(json.dumps(record, indent=1),
                      osp.join(out, f'{name}.json'))
    write_index(out)
    return record


def write_index(out: str) -> str:
    """Regenerate ``OUT/README.md`` from every record in ``out``."""
    rows = []
    for path in sorted(glob.glob(osp.join(out, '*.json'))):
        if path.endswith('.log.json'):
            continue
        with open(path) as f:
            r = json.load(f)
        cfg = osp.relpath(osp.join(ROOT, r['config']), out)
        wall = (f"{r['wall_time_s'] / 60:.1f} min"
                if r.get('wall_time_s') is not None else '-')
        rows.append(
            f"| {r['name']} | [config]({cfg}) | {r['top1']:.2f} | "
            f"{r.get('epochs', '-')} | {wall} | [json log]({r['log']}) | "
            f"`{r['checkpoint']}` file sha256 `{r['checkpoint_sha256']}`, "
            f"weights sha256 `{r.get('weights_sha256', '-')}` |")
    text = '\n'.join([
        '# Published runs', '',
        'Written by `tools/misc/publish_run.py` (do not edit by hand). '
        'Each row: the config that produced it, the top-1 of its last '
        'validation, the wall time of the run (first to last log line, on '
        'the machine it ran on), the mmengine json log and two SHA-256 '
        'hashes of the final checkpoint (not committed): of the file (to '
        'check a checkpoint you received) and of its weights only (names, '
        'dtypes, shapes, values; to check a run you re-created: the file '
        'itself also stores the time, config text and experiment name, so '
        'its hash always differs). The same config on the same software '
        'and CPU gave bit-identical weights in our re-run. Recompute both '
        'with `python tools/misc/publish_run.py WORK_DIR --config CONFIG '
        '--out OTHER_DIR`. Commands: the `command` field of each '
        '`<name>.json`.', '',
        '| run | config | top-1 (%) | epochs | wall time | log | '
        'checkpoint |', '| --- | --- | --- | --- | --- | --- | --- |'
    ] + rows) + '\n'
    path = osp.join(out, 'README.md')
    with open(path, 'w') as f:
        f.write(text)
    return path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dir', help='work dir of the training run')
    parser.add_argument('--config', required=True,
                        help='the config file in this repository that ran')
    parser.add_argument('--out', default=DEFAULT_OUT,
                        help='results folder (default: benchmarks/results/'
                        'runs)')
    parser.add_argument('--name', default=None,
                        help='row name (default: the config name)')
    parser.add_argument('--checkpoint', default=None,
                        help='checkpoint to hash (default: last_checkpoint)')
    parser.add_argument('--command', default=None,
                        help='the command that produced the run, recorded '
                        'as is')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        record = publish(args.work_dir, args.config, args.out, args.name,
                         args.checkpoint, args.command)
    except (FileNotFoundError, ValueError) as err:
        print(f'publish_run: {err}', file=sys.stderr)
        return 1
    print(json.dumps(record, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
