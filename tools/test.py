# Adapted from mmpretrain 1.2.0 tools/test.py (Apache-2.0, OpenMMLab).
"""Evaluate a checkpoint on the config's test set.

Example:
    python tools/test.py CONFIG work_dirs/xxx/epoch_30.pth
    bash tools/dist_test.sh CONFIG CHECKPOINT 2
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from mmengine.config import Config  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mergemix_mm  # noqa: E402,F401
from mergemix_mm.utils.cli import CfgOptionsAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the logs')
    parser.add_argument(
        '--out', help='dump the raw predictions to this pickle file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override config settings, e.g. test_dataloader.batch_size=8')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out {args.out}: the predictions are a pickle; '
                     'give a .pkl or .pickle file name')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _shape(text: str) -> tuple:
    """``'[10, 96]'`` (torch's message) -> ``(10, 96)``."""
    return tuple(int(v) for v in text.strip('[]').split(',') if v.strip())


def unfit_weights(model, checkpoint: str) -> tuple:
    """Weights of ``model`` that ``checkpoint`` does not hold, and those it
    holds with another shape.

    mmengine loads ``load_from`` non-strictly and skips both kinds with a
    warning buried in the log, so a checkpoint of another architecture (or
    of a head with another class count) would be evaluated with randomly
    initialised weights; test.py refuses that instead. The checkpoint is
    loaded into ``model`` (the runner loads it again), so the model's own
    load hooks run first: a ViT's ``pos_embed`` resized for another image
    size, or a timm wrapper's key prefix, is not a misfit.

    Returns:
        tuple: ``(missing, mismatched)`` lists of state-dict keys;
        ``mismatched`` entries read ``'key: checkpoint shape vs model
        shape'``.
    """
    import re
    import zipfile

    import torch
    from mmengine.model import is_model_wrapper

    from mergemix_mm.utils.checkpoint_safety import check_checkpoint
    check_checkpoint(checkpoint, kind='weights')  # names a corrupt file
    ckpt = torch.load(checkpoint, map_location='cpu', weights_only=False,
                      mmap=zipfile.is_zipfile(checkpoint))
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    if is_model_wrapper(model):
        model = model.module
    pattern = re.compile(
        r'size mismatch for (\S+): copying a param with shape '
        r'torch\.Size\((\[[^]]*\])\) from checkpoint, the shape in current '
        r'model is torch\.Size\((\[[^]]*\])\)')
    mismatched = []
    try:
        missing = model.load_state_dict(state, strict=False).missing_keys
    except RuntimeError as err:
        found = pattern.findall(str(err))
        if not found:
            raise
        mismatched = [
            f'{k}: {_shape(a)} vs {_shape(b)}' for k, a, b in found
        ]
        # the shapes are reported after the load hooks, with the model's
        # key names; the missing keys come from the others
        bad = {k for k, _, _ in found}
        try:
            missing = [
                k for k in model.load_state_dict(
                    {k: v for k, v in state.items() if k not in bad},
                    strict=False).missing_keys if k not in bad
            ]
        except RuntimeError:  # hooks renamed the keys: report the shapes
            missing = []
    return list(missing), mismatched


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.config):
        raise SystemExit(f'config file {args.config!r} does not exist')
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint {args.checkpoint!r} does not exist')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if cfg.get('test_dataloader') is not None:
        cfg.test_dataloader.setdefault('persistent_workers', False)
    if args.out is not None:
        cfg.test_evaluator = [cfg.test_evaluator] if isinstance(
            cfg.test_evaluator, dict) else list(cfg.test_evaluator)
        cfg.test_evaluator.append(
            dict(type='DumpResults', out_file_path=args.out))
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    missing, mismatched = unfit_weights(runner.model, args.checkpoint)
    if missing or mismatched:
        total = len(runner.model.state_dict())
        problems = []
        if missing:
            problems.append(f'{len(missing)} of its {total} weights are not '
                            f'in the checkpoint (e.g. {missing[:3]})')
        if mismatched:
            problems.append(f'{len(mismatched)} have another shape there '
                            f'(checkpoint vs model, e.g. {mismatched[:3]})')
        raise SystemExit(
            f'checkpoint {args.checkpoint!r} does not fit the model of '
            f'{args.config!r}: {"; ".join(problems)}, so they would be '
            'evaluated randomly initialised. Use the config the checkpoint '
            'was trained with.')
    metrics = runner.test()
    return metrics


if __name__ == '__main__':
    main()
