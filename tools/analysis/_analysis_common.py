"""Command-line pieces shared by the analysis tools.

``calibration.py`` and ``occlusion.py`` evaluate one or more checkpoints
(each with its own config, or one config for all) on a config's dataloader:
the same options, the same input checks (done before the heavy imports, so
a typo fails fast) and the same per-checkpoint loading. ``visualize_mix.py``,
``get_flops.py`` and ``benchmark_speed.py`` share :func:`run_cli` and the
option helpers. The library side (loading, prediction, plots) is
:mod:`mergemix_mm.analysis`.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Iterator, List, Optional, Sequence, Tuple

__all__ = [
    'add_label_args', 'add_loader_args', 'check_per_checkpoint',
    'default_labels', 'check_inputs', 'iter_checkpoint_models',
    'command_line', 'run_cli', 'cfg_options_action', 'check_loader_args',
    'check_at_least_one', 'check_out_dir'
]

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def cfg_options_action():
    """``mergemix_mm.utils.cli.CfgOptionsAction`` (``--cfg-options`` entries
    it cannot parse are usage errors), loaded from its file when the package
    is not imported yet: parsing the command line stays free of the heavy
    imports."""
    module = sys.modules.get('mergemix_mm.utils.cli')
    if module is None:
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            '_mergemix_mm_cli', osp.join(ROOT, 'mergemix_mm', 'utils',
                                         'cli.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.CfgOptionsAction


def add_label_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--labels`` and ``--configs`` (one entry per checkpoint)."""
    parser.add_argument('--labels',
                        nargs='+',
                        help='legend label per checkpoint (default: file '
                        'names)')
    parser.add_argument(
        '--configs',
        nargs='+',
        help='one config per checkpoint, when they differ (default: CONFIG '
        'for all)')


def add_loader_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--split``, ``--batch-size``, ``--max-batches``, ``--device`` and
    ``--cfg-options``."""
    parser.add_argument('--split',
                        default='test',
                        choices=['train', 'val', 'test'],
                        help='dataloader to evaluate (default: test)')
    parser.add_argument('--batch-size',
                        type=int,
                        default=None,
                        help='override the dataloader batch size')
    parser.add_argument('--max-batches',
                        type=int,
                        default=None,
                        help='evaluate only the first N batches')
    parser.add_argument('--device',
                        default=None,
                        help='cpu | cuda | cuda:N (default: cuda if '
                        'available)')
    parser.add_argument('--cfg-options',
                        nargs='+',
                        action=cfg_options_action(),
                        help='override config settings')


def check_per_checkpoint(parser: argparse.ArgumentParser,
                         args: argparse.Namespace) -> None:
    """Fail (``parser.error``) if ``--labels`` or ``--configs`` does not have
    one entry per checkpoint of ``args.checkpoints``."""
    for option in ('labels', 'configs'):
        values = getattr(args, option)
        if values is not None and len(values) != len(args.checkpoints):
            parser.error(f'--{option} has {len(values)} entries for '
                         f'{len(args.checkpoints)} checkpoint(s)')


def check_at_least_one(parser: argparse.ArgumentParser,
                       args: argparse.Namespace,
                       options: Sequence[str]) -> None:
    """Fail (``parser.error``, naming the option) on any of ``options``
    (``args`` attribute names) that is set and below 1."""
    for option in options:
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} {value} must be >= 1")


def check_loader_args(parser: argparse.ArgumentParser,
                      args: argparse.Namespace) -> None:
    """Fail (``parser.error``) on a ``--batch-size`` or ``--max-batches``
    below 1, before anything is built or written."""
    check_at_least_one(parser, args, ('batch_size', 'max_batches'))


def check_out_dir(parser: argparse.ArgumentParser, out: str) -> None:
    """Fail (``parser.error``) when ``--out`` cannot become the output
    folder: it is an existing file, or its nearest existing parent is not a
    writable folder. Checked before anything runs, so that a long
    evaluation does not end in a traceback."""
    if osp.exists(out) and not osp.isdir(out):
        parser.error(f'--out {out!r} exists and is not a directory')
    parent = osp.abspath(out)
    while not osp.exists(parent):
        parent = osp.dirname(parent)
    if not osp.isdir(parent):
        parser.error(f'--out {out!r}: {parent!r} is a file, not a folder')
    if not os.access(parent, os.W_OK | os.X_OK):
        parser.error(f'--out {out!r}: {parent!r} is not writable')


def default_labels(paths: Sequence[str]) -> List[str]:
    """Checkpoint file names without extension, prefixed with their folder
    when two would be the same."""
    names = [osp.splitext(osp.basename(p))[0] for p in paths]
    if len(set(names)) == len(names):
        return names
    return [
        osp.join(osp.basename(osp.dirname(osp.abspath(p))), n)
        for p, n in zip(paths, names)
    ]


def check_inputs(args: argparse.Namespace) -> List[str]:
    """The config of each checkpoint, once every config and checkpoint is
    known to exist.

    Raises:
        FileNotFoundError: Naming the first missing config or checkpoint.
    """
    configs = args.configs or [args.config] * len(args.checkpoints)
    for path in configs:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file {path!r} does not exist.')
    for ckpt in args.checkpoints:
        if not osp.isfile(ckpt):
            raise FileNotFoundError(
                f'checkpoint file {ckpt!r} does not exist.')
    return configs


def iter_checkpoint_models(
        args: argparse.Namespace, labels: Sequence[str],
        configs: Sequence[str],
        device) -> Iterator[Tuple[str, str, str, object, object]]:
    """Load each checkpoint in turn.

    Yields:
        tuple: ``(label, config, checkpoint, model, loader)``: the model in
        eval mode on ``device`` and the ``args.split`` dataloader. The
        random generators are re-seeded before each loader is handed out,
        so every checkpoint sees the same images also where the pipeline
        is random (``--split train``: crops, flips).
    """
    from mmengine.runner import set_random_seed

    from mergemix_mm.analysis import build_loader, build_model, load_config
    for label, config, ckpt in zip(labels, configs, args.checkpoints):
        cfg = load_config(config, args.cfg_options)
        model = build_model(cfg, ckpt, device)
        set_random_seed(0)
        loader = build_loader(cfg, args.split, args.batch_size)
        yield label, config, ckpt, model, loader


def command_line(tool: str, argv: Optional[Sequence[str]] = None) -> str:
    """``python tools/analysis/<tool>.py ARGS`` as it was run."""
    return f'python tools/analysis/{tool}.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv)


def write_report(args: argparse.Namespace, name: str, markdown: str,
                 command: str, device, records: list, **settings) -> None:
    """Write ``<out>/<name>.md`` (``markdown``) and ``<out>/<name>.json``
    (the command, ``settings``, device, ``max_batches`` and ``records``),
    each atomically (a failed write leaves the previous file)."""
    from mergemix_mm.utils.checkpoint_safety import atomic_write_text
    atomic_write_text(markdown, osp.join(args.out, f'{name}.md'))
    payload = dict(command=command,
                   **settings,
                   device=str(device),
                   max_batches=args.max_batches,
                   results=records)
    atomic_write_text(json.dumps(payload, indent=2),
                      osp.join(args.out, f'{name}.json'))


def run_cli(main) -> None:
    """Run ``main()``, turning input errors into a one-line exit message."""
    try:
        main()
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f'error: {err}')
    except RuntimeError as err:
        # a truncated / corrupt checkpoint: the message names the file
        safety = sys.modules.get('mergemix_mm.utils.checkpoint_safety')
        if safety is not None and isinstance(err,
                                             safety.CheckpointCorruptError):
            raise SystemExit(f'error: {err}')
        raise
