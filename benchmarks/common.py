"""Shared pieces of the benchmark scripts: the method table, model building,
environment records, result files and the accuracy-vs-cost plot.

Every script writes ``benchmarks/results/<name>.json`` (raw numbers plus the
command, package versions and hardware) and ``<name>.md`` (the tables).
"""
import argparse
import copy
import functools
import importlib.util
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time
from typing import Dict, List, Optional

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

RESULTS = osp.join(ROOT, 'benchmarks', 'results')
CACHE = osp.join(ROOT, 'work_dirs', 'benchmarks')

#: name -> display label, in table order. The recipe of each method is the
#: config ``configs/baselines/<family>/<model>-<name>_<data>.py``; MergeMix
#: uses its own configs (:data:`MERGEMIX_CONFIGS`).
METHODS: Dict[str, str] = {
    'vanilla': 'No mixing',
    'mixup': 'Mixup',
    'cutmix': 'CutMix',
    'deit': 'Mixup+CutMix (DeiT)',
    'fmix': 'FMix',
    'gridmix': 'GridMix',
    'smoothmix': 'SmoothMix',
    'resizemix': 'ResizeMix (paper / OpenMixup law)',
    'resizemix-mmpretrain': 'ResizeMix (mmpretrain law)',
    'saliencymix': 'SaliencyMix',
    'attentivecutmix': 'Attentive-CutMix',
    'transmix': 'TransMix',
    'smmix': 'SMMix',
    'mixpro': 'MixPro',
    'tdattenmix': 'TdAttenMix',
    'tokenmix': 'TokenMix',
    'mergemix': 'MergeMix',
}

#: MergeMix's augment when the lead's 224 px config is missing
#: (ALGORITHM.md §8: block 9 of 12 = index 8, 98 of 196 tokens merged).
MERGEMIX_224 = dict(type='MergeMix', alpha=1.0, attn_layer=8, merge_num=98)
#: MergeMix recipes (the lead's configs: digits demo, official CIFAR recipe).
MERGEMIX_CONFIGS = {
    'digits': osp.join(ROOT, 'configs', 'demo',
                       'vit-tiny_1xb64-mergemix_digits-32px.py'),
    'deit-s': osp.join(ROOT, 'configs', 'mergemix',
                       'deit-small-p16_1xb100-mergemix-200e_cifar100-'
                       '224px.py'),
    'vit-s': osp.join(ROOT, 'configs', 'mergemix',
                      'vit-small-p16_1xb100-mergemix-200e_cifar100-224px.py'),
}


def mergemix_available() -> bool:
    """Whether ``MergeMix`` is registered (the lead's implementation)."""
    import mergemix_mm  # noqa: F401
    from mmpretrain.registry import BATCH_AUGMENTS
    return 'MergeMix' in BATCH_AUGMENTS


def select_methods(names: Optional[List[str]], skip=()) -> List[str]:
    """Resolve ``--methods`` (None = all available), in table order.

    Raises:
        ValueError: For an unknown name.
    """
    available = [m for m in METHODS if m not in skip]
    if not mergemix_available():
        available = [m for m in available if m != 'mergemix']
    if not names:
        return available
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f'unknown method(s) {unknown}; choose from '
                         f'{list(METHODS)}')
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(f'method(s) {missing} are not available here '
                         '(MergeMix not registered, or not part of this '
                         'benchmark)')
    return [m for m in available if m in names]


def config_path(method: str, family: str) -> str:
    """Config file of ``method`` for ``family`` in {'digits', 'deit-s',
    'vit-s'}."""
    if method == 'mergemix' and osp.exists(MERGEMIX_CONFIGS[family]):
        return MERGEMIX_CONFIGS[family]
    if family == 'digits':
        name = f'vit-tiny_1xb64-{method}_digits-32px.py'
        return osp.join(ROOT, 'configs', 'baselines', 'digits', name)
    model = {'deit-s': 'deit-small', 'vit-s': 'vit-small'}[family]
    base = method if method != 'mergemix' else 'vanilla'
    name = f'{model}_1xb100-{base}_cifar100-224px.py'
    return osp.join(ROOT, 'configs', 'baselines', 'cifar100', name)


def load_config(method: str, family: str):
    """The mmengine ``Config`` of a method (MergeMix without a lead config
    at 224 px: the vanilla config with :data:`MERGEMIX_224`)."""
    from mmengine.config import Config
    path = config_path(method, family)
    cfg = Config.fromfile(path)
    if method == 'mergemix' and path != MERGEMIX_CONFIGS[family]:
        cfg.model.train_cfg = dict(augments=[copy.deepcopy(MERGEMIX_224)])
    return cfg


def own_model(method: str) -> bool:
    """Whether a method's config changes the model itself (MergeMix's ToMe
    schedule, ``tome_in_mix`` and auxiliary loss), so it cannot share the
    baselines' model in the cost benchmark."""
    return method == 'mergemix'


def pure_train_cfg(method: str, cfg) -> dict:
    """The method alone (probability 1), for the cost and label-fidelity
    benchmarks: recipes that pair a method with Mixup keep only the method;
    'deit' keeps its 50/50 Mixup/CutMix pair."""
    train_cfg = copy.deepcopy(cfg.model.train_cfg)
    augs = list(train_cfg['augments'])
    if method in ('deit', 'vanilla') or len(augs) <= 1:
        return dict(augments=augs)
    main = [a for a in augs if a['type'] != 'Mixup']
    return dict(augments=main[:1])


def build_model(cfg, train_cfg: Optional[dict] = None, device: str = 'cpu'):
    """Build the classifier of ``cfg`` (with the dataset's preprocessor),
    optionally with another ``train_cfg``."""
    import mergemix_mm  # noqa: F401
    from mmpretrain.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg['data_preprocessor'] = copy.deepcopy(cfg.data_preprocessor)
    if train_cfg is not None:
        model_cfg['train_cfg'] = copy.deepcopy(train_cfg)
    return MODELS.build(model_cfg).to(device)


def set_batch_augments(model, train_cfg: dict) -> None:
    """Swap a built classifier's batch augments (and bind model-aware
    ones), so one model can be timed with every method."""
    from mmpretrain.models.utils.batch_augments import RandomBatchAugment

    from mergemix_mm.models.batch_augments import bind_model_aware_augments
    from mergemix_mm.models.classifiers import normalize_batch_augments
    cfg = normalize_batch_augments(copy.deepcopy(train_cfg))
    dp = model.data_preprocessor
    dp.batch_augments = None if cfg is None else RandomBatchAugment(**cfg)
    if cfg is not None:
        dp.to_onehot = True
        bind_model_aware_augments(model)


def fake_batch(batch_size: int, img_size: int, num_classes: int, seed: int):
    """A uint8 image batch with labels, as the dataloader yields it."""
    import torch
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch_size, 3, img_size, img_size),
                           generator=g, dtype=torch.uint8)
    labels = torch.randint(0, num_classes, (batch_size, ), generator=g)
    return dict(
        inputs=list(images),
        data_samples=[DataSample().set_gt_label(int(y)) for y in labels])


# ----------------------------------------------------------------------
# environment and result files
def _git_commit() -> str:
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                             cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(['git', 'status', '--porcelain'], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ('+dirty' if dirty.stdout.strip() else '')
    except Exception:  # noqa: BLE001
        return 'unknown'


@functools.lru_cache(maxsize=None)
def load_tool(name: str):
    """The module ``tools/analysis/<name>.py`` (loaded once per process)."""
    path = osp.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def environment(threads: Optional[int] = None) -> dict:
    """Command, versions and hardware for a result file."""
    import mmengine
    import mmpretrain
    import numpy
    import torch
    env = dict(
        command='python ' + ' '.join([osp.relpath(sys.argv[0], ROOT)] +
                                     sys.argv[1:]),
        date=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
        git_commit=_git_commit(),
        python=platform.python_version(),
        torch=torch.__version__,
        mmengine=mmengine.__version__,
        mmpretrain=mmpretrain.__version__,
        numpy=numpy.__version__,
        platform=platform.platform(),
        cpu=_cpu_name(),
        # the vector ISA PyTorch dispatches to (e.g. AVX2, AVX512): kernels,
        # speed and float rounding differ between them
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        cpu_count=os.cpu_count(),
        torch_threads=threads if threads is not None else
        torch.get_num_threads(),
        cuda=torch.cuda.get_device_name(0)
        if torch.cuda.is_available() else None,
    )
    try:
        import timm
        env['timm'] = timm.__version__
    except ImportError:  # pragma: no cover - timm is a requirement
        pass
    try:
        env['load_average_at_start'] = os.getloadavg()
    except OSError:
        pass
    return env


def env_markdown(env: dict) -> str:
    """Markdown block describing the run."""
    keys = ['command', 'date', 'git_commit', 'python', 'torch', 'mmengine',
            'mmpretrain', 'timm', 'numpy', 'platform', 'cpu', 'cpu_capability',
            'cpu_count', 'torch_threads', 'cuda', 'load_average_at_start']
    lines = ['| | |', '| --- | --- |']
    for k in keys:
        if k in env:
            v = env[k]
            if k == 'command':
                v = f'`{v}`'
            lines.append(f'| {k} | {v} |')
    return '\n'.join(lines)


def write_json(path: str, payload, **kwargs) -> None:
    """``json.dump`` ``payload`` to ``path`` atomically (see
    :func:`write_results`).

    Args:
        path (str): File to write.
        payload: JSON-serialisable object.
        **kwargs: Passed to ``json.dump`` (e.g. ``indent``).
    """
    from mergemix_mm.utils.checkpoint_safety import atomic_write_text
    atomic_write_text(json.dumps(payload, **kwargs), path)


def write_results(name: str, payload: dict, markdown: str,
                  out_dir: str = RESULTS) -> None:
    """Write ``<name>.json`` and ``<name>.md`` under ``out_dir``.

    Each file is written to a temporary file first and renamed into place,
    the JSON only once the markdown is complete too, so a failure or an
    interrupt while writing never leaves a half-written result or a new
    JSON next to a stale table.

    Args:
        name (str): File stem.
        payload (dict): Raw numbers, command and environment.
        markdown (str): The tables.
        out_dir (str): Folder, created if missing. Defaults to
            :data:`RESULTS`.
    """
    os.makedirs(out_dir, exist_ok=True)
    base = osp.join(out_dir, name)
    text = json.dumps(payload, indent=1, default=float)
    from mergemix_mm.utils.checkpoint_safety import atomic_write_text
    atomic_write_text(markdown.rstrip() + '\n', base + '.md')
    atomic_write_text(text, base + '.json')
    print(f'wrote {base}.json and .md')


def _int_at_least(text: str, low: int) -> int:
    value = int(text)
    if value < low:
        raise argparse.ArgumentTypeError(f'{value} must be >= {low}')
    return value


def positive_int(text: str) -> int:
    """``argparse`` type of a count that must be at least 1 (argparse then
    exits with a one-line error naming the option).

    Raises:
        argparse.ArgumentTypeError: For a value below 1.
    """
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """``argparse`` type of a count that may be 0 but not negative.

    Raises:
        argparse.ArgumentTypeError: For a negative value.
    """
    return _int_at_least(text, 0)


def md_table(header: List[str], rows: List[List]) -> str:
    """A markdown table."""
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join(' --- ' for _ in header) + '|']
    for row in rows:
        lines.append('| ' + ' | '.join(str(c) for c in row) + ' |')
    return '\n'.join(lines)


# ----------------------------------------------------------------------
# plot
def plot_accuracy_vs_cost(out_dir: str = RESULTS) -> Optional[str]:
    """Scatter of digits accuracy (mean ± std) against the tiny-ViT step
    time ratio to Mixup, from ``accuracy.json`` and ``cost.json`` in
    ``out_dir``. Returns the PNG path, or None if a file is missing."""
    acc_path = osp.join(out_dir, 'accuracy.json')
    cost_path = osp.join(out_dir, 'cost.json')
    if not (osp.exists(acc_path) and osp.exists(cost_path)):
        return None
    with open(acc_path) as f:
        acc = json.load(f)
    with open(cost_path) as f:
        cost = json.load(f)
    tiny = cost['settings'].get('vit-tiny-32')
    if tiny is None:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for method, res in acc['summary'].items():
        if method not in tiny['methods']:
            continue
        x = tiny['methods'][method]['ratio_vs_mixup']
        y, err = res['mean'], res['std']
        ax.errorbar(x, y, yerr=err, fmt='o', capsize=3)
        ax.annotate(METHODS.get(method, method), (x, y),
                    textcoords='offset points', xytext=(5, 4), fontsize=8)
    ax.set_xlabel('training step time / Mixup step time '
                  '(tiny ViT, 32 px, batch 64, CPU)')
    ax.set_ylabel(f"top-1 accuracy (%), digits, {acc['config']['epochs']} "
                  f"epochs, mean ± std of {len(acc['config']['seeds'])} "
                  'seeds')
    ax.set_title('Accuracy vs step cost (higher and further left is better)')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = osp.join(out_dir, 'accuracy_vs_cost.png')
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f'wrote {path}')
    return path
