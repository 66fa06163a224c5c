"""Inference throughput of a ViT with and without token merging (ToMe).

All merge settings run on the same model, in the same process, interleaved
(every repeat times each setting once, in rotating order), so the ratios are
robust to the machine's load drifting during the run.

Example::

    python tools/analysis/benchmark_speed.py --arch deit-small \
        --batch-size 16 --threads 2 --settings none merge49 merge98 r8 \
        --repeats 10 --out-json speed.json --out-md speed.md

    # the backbone of an mmpretrain config (its image size unless
    # --img-size is given; the settings replace its own merge schedule,
    # merge<N> spread with its merge_inflect / schedule_compat, merged
    # forwards with its prop_attn)
    python tools/analysis/benchmark_speed.py \
        configs/mergemix/deit-small-p16_4xb256-mergemix-300e_in1k.py \
        --settings none merge49

Settings: ``none`` (stock forward, no merging), ``merge<N>`` (MergeMix
``merge_num=N`` decreasing schedule), ``r<N>`` (ToMe constant ``r=N`` per
block).
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple)

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _analysis_common import check_at_least_one, run_cli  # noqa: E402

__all__ = [
    'parse_setting', 'build_model', 'build_config_backbone',
    'build_from_config', 'forward_fn',
    'run_benchmark',
    'measure_merge_overhead', 'environment_info', 'format_markdown', 'main'
]


def parse_setting(name: str, num_layers: int) -> List[int]:
    """``'none'`` | ``'merge<N>'`` | ``'r<N>'`` -> ``r`` per block."""
    from mergemix_mm.models.tome import schedule_from_setting
    return schedule_from_setting(name, num_layers)


def build_config_backbone(config: str) -> torch.nn.Module:
    """The backbone of an mmpretrain config as the config builds it (a
    ``ToMeTimmViT`` stays wrapped), randomly initialised.

    Raises:
        FileNotFoundError: If ``config`` does not exist.
        ValueError: If the config's backbone is not a supported ViT.
    """
    from mmpretrain.registry import MODELS

    from mergemix_mm.analysis import load_config
    from mergemix_mm.models.tome import vit_geometry
    model = load_config(config).model
    backbone = MODELS.build(model.backbone if 'backbone' in model else model)
    vit_geometry(backbone)  # names the type of a non-ViT backbone
    return backbone


def build_from_config(config: str) -> torch.nn.Module:
    """The ViT backbone of an mmpretrain config, randomly initialised, in
    eval mode; a ``ToMeTimmViT`` gives its timm model.

    Raises:
        FileNotFoundError: If ``config`` does not exist.
        ValueError: If the config's backbone is not a supported ViT.
    """
    return _timed_module(build_config_backbone(config))


def _timed_module(backbone: torch.nn.Module) -> torch.nn.Module:
    """The module the benchmark times (a ``ToMeTimmViT``'s timm model), in
    eval mode."""
    from mergemix_mm.models.tome.timm_vit import is_timm_vit
    if is_timm_vit(getattr(backbone, 'model', None)):
        backbone = backbone.model  # ToMeTimmViT
    # not ``return backbone.eval()``: mmpretrain's BaseBackbone.train (so
    # VisionTransformer.eval) returns None
    backbone.eval()
    return backbone


def build_model(arch: str = 'deit-small',
                img_size: int = 224,
                backend: str = 'mmpretrain') -> torch.nn.Module:
    """Randomly initialised ViT in eval mode (weights do not affect speed).

    Args:
        arch (str): mmpretrain arch name (``deit-small``...) or, for
            ``backend='timm'``, a timm model name.
        img_size (int): Input size. Defaults to 224.
        backend (str): ``'mmpretrain'`` (``ToMeVisionTransformer``) or
            ``'timm'`` (timm ``VisionTransformer``). Defaults to
            ``'mmpretrain'``.
    """
    import mergemix_mm  # noqa: F401
    if backend == 'mmpretrain':
        from mergemix_mm.models.backbones import ToMeVisionTransformer
        try:
            model = ToMeVisionTransformer(arch=arch, img_size=img_size)
        except AssertionError as err:  # mmpretrain's unknown-arch assert
            raise ValueError(f'--arch {arch!r}: {err}') from err
    elif backend == 'timm':
        import timm
        name = {
            'deit-small': 'deit_small_patch16_224',
            'deit-tiny': 'deit_tiny_patch16_224',
            'deit-base': 'deit_base_patch16_224'
        }.get(arch, arch)
        model = timm.create_model(name, pretrained=False, img_size=img_size)
    else:
        raise ValueError(f"backend={backend!r} must be 'mmpretrain' or "
                         "'timm'")
    model.eval()
    return model


def forward_fn(model: torch.nn.Module,
               r_list: Sequence[int],
               prop_attn: bool = False) -> Callable[[torch.Tensor], Any]:
    """The forward timed for one setting: with ``r_list`` merging nothing,
    the stock forward (mmpretrain: the backbone's outputs, with a ToMe
    backbone's own schedule switched off; timm: the pooled pre-logits
    features); else the library's ToMe forward without source tracking,
    returning its ``outs``.

    Args:
        model (nn.Module): mmpretrain ``ToMeVisionTransformer`` /
            ``VisionTransformer`` or timm ``VisionTransformer``, eval mode.
        r_list (Sequence[int]): ``r`` per block.
        prop_attn (bool): Proportional attention in the merged forward.
            Defaults to False.

    Returns:
        Callable: The forward.
    """
    from mergemix_mm.models.tome import (tome_timm_forward, tome_vit_forward)
    from mergemix_mm.models.tome.timm_vit import is_timm_vit
    timm_model = is_timm_vit(model)
    if not any(r_list):
        if timm_model:
            return lambda x: model.forward_head(
                model.forward_features(x), pre_logits=True)
        if any(getattr(model, 'current_r_list', ())):
            return lambda x: _unmerged(model, x)  # a config's ToMe backbone
        return lambda x: model(x)  # merging off: the stock forward
    fwd = tome_timm_forward if timm_model else tome_vit_forward
    return lambda x: fwd(
        model, x, r_list, prop_attn=prop_attn, trace_source=False).outs


def _unmerged(model: torch.nn.Module, x: torch.Tensor) -> Any:
    with model.merging(False):
        return model(x)


def _rusage():
    """``(system s, minor page faults)`` of this process so far (zeros where
    ``resource`` is unavailable)."""
    try:
        import resource
    except ImportError:  # pragma: no cover (not on Unix)
        return 0.0, 0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_stime, ru.ru_minflt


def run_benchmark(model: torch.nn.Module,
                  settings: Sequence[str],
                  batch_size: int = 16,
                  img_size: int = 224,
                  repeats: int = 10,
                  warmup: int = 2,
                  progress: bool = True,
                  extra: Optional[Dict[str, Tuple[Sequence[int],
                                                  Callable]]] = None,
                  schedules: Optional[Dict[str, Sequence[int]]] = None,
                  prop_attn: bool = False) -> Dict[str, dict]:
    """Time every setting, interleaved, and return per-setting statistics.

    Args:
        extra (dict, optional): More forwards to time in the same rounds:
            name -> ``(r_list, fn)`` with ``fn(images)``; e.g. another
            implementation of a setting. Defaults to None.
        schedules (dict, optional): ``r`` per block of the settings (e.g.
            from :func:`mergemix_mm.analysis.settings_schedules` with a
            config backbone's schedule options). Defaults to None: parsed
            from the names with the default schedule.
        prop_attn (bool): Proportional attention in the merged forwards.
            Defaults to False.

    Returns:
        dict: setting -> ``r_list``, ``times_s``, ``median_s``,
        ``images_per_s`` and ``speedup`` (wall clock, ratio of medians vs
        the first setting), ``paired_speedup`` (median over rounds of the
        first setting's time / this setting's time in the same round), plus
        ``cpu_times_s``, ``median_cpu_s`` and ``cpu_speedup`` (process CPU
        time of all threads, less sensitive to other processes competing
        for the cores), ``median_sys_s`` (kernel time) and
        ``median_page_faults`` (minor page faults per forward: memory the
        allocator had to fetch fresh from the OS).
    """
    from mergemix_mm.models.tome import vit_geometry
    num_layers = vit_geometry(model).num_layers
    r_lists = _setting_schedules(settings, num_layers, schedules)
    fns = {s: forward_fn(model, r, prop_attn) for s, r in r_lists.items()}
    for name, (r_list, fn) in (extra or {}).items():
        if name in fns:
            raise ValueError(f'extra setting {name!r} is already a setting')
        r_lists[name], fns[name] = list(r_list), fn
    x = torch.randn(batch_size, 3, img_size, img_size)
    keys = ('wall', 'cpu', 'sys', 'faults')
    rec = {s: {k: [] for k in keys} for s in fns}
    order = list(fns)
    iterator = range(warmup + repeats)
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc='benchmark', unit='round')
    with torch.inference_mode():
        for it in iterator:
            for s in order:
                sys0, flt0 = _rusage()
                cpu_start = time.process_time()
                start = time.perf_counter()
                fns[s](x)
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu_start
                sys1, flt1 = _rusage()
                if it >= warmup:
                    rec[s]['wall'].append(elapsed)
                    rec[s]['cpu'].append(cpu)
                    rec[s]['sys'].append(sys1 - sys0)
                    rec[s]['faults'].append(flt1 - flt0)
            order = order[1:] + order[:1]  # rotate to spread drift
    base = rec[settings[0]]
    med = statistics.median
    results = {}
    for s in fns:
        r = rec[s]
        results[s] = dict(
            r_list=r_lists[s],
            times_s=[round(t, 5) for t in r['wall']],
            median_s=med(r['wall']),
            images_per_s=batch_size / med(r['wall']),
            speedup=med(base['wall']) / med(r['wall']),
            paired_speedup=med(
                [b / t for b, t in zip(base['wall'], r['wall'])]),
            cpu_times_s=[round(t, 5) for t in r['cpu']],
            median_cpu_s=med(r['cpu']),
            cpu_speedup=med(base['cpu']) / med(r['cpu']),
            median_sys_s=med(r['sys']),
            median_page_faults=med(r['faults']))
    return results


def _setting_schedules(settings: Sequence[str], num_layers: int,
                       schedules: Optional[Dict[str, Sequence[int]]]
                       ) -> Dict[str, List[int]]:
    """``r`` per block of each setting: from ``schedules`` where given, else
    parsed from the name."""
    schedules = schedules or {}
    return {
        s: list(schedules[s]) if s in schedules else parse_setting(
            s, num_layers)
        for s in settings
    }


@contextlib.contextmanager
def merge_step_replaced(fn: Callable) -> Iterator[Callable]:
    """Within the block, the functional ToMe forwards (mmpretrain's
    ``tome_vit_forward`` and ``tome_timm_forward``) call ``fn`` instead of
    their merging step ``merge_tokens`` (same signature); the original is
    yielded and put back on exit, also after an error. For instrumented or
    substituted timing forwards only."""
    from mergemix_mm.models.tome import mmpretrain_vit, timm_vit
    saved = (mmpretrain_vit.merge_tokens, timm_vit.merge_tokens)
    mmpretrain_vit.merge_tokens = timm_vit.merge_tokens = fn
    try:
        yield saved[0]
    finally:
        mmpretrain_vit.merge_tokens, timm_vit.merge_tokens = saved


def measure_merge_overhead(
        model: torch.nn.Module,
        settings: Sequence[str],
        batch_size: int = 16,
        img_size: int = 224,
        repeats: int = 3,
        schedules: Optional[Dict[str, Sequence[int]]] = None,
        prop_attn: bool = False) -> Dict[str, dict]:
    """Share of the forward time spent in ToMe's merging step (matching,
    weighted merge, source update), measured by timing every call of the
    functional ``merge_tokens`` in separate, instrumented forwards.
    ``schedules`` and ``prop_attn`` as in :func:`run_benchmark`.

    Returns:
        dict: setting -> ``forward_s`` (median instrumented forward),
        ``merge_s`` (median total merge time per forward) and ``fraction``.
    """
    from mergemix_mm.models.tome import vit_geometry
    num_layers = vit_geometry(model).num_layers
    x = torch.randn(batch_size, 3, img_size, img_size)
    spent = [0.0]

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = merge(*args, **kwargs)
        spent[0] += time.perf_counter() - start
        return out

    results = {}
    r_lists = _setting_schedules(settings, num_layers, schedules)
    with merge_step_replaced(timed) as merge, torch.inference_mode():
        for s, r_list in r_lists.items():
            if not any(r_list):
                continue
            fn = forward_fn(model, r_list, prop_attn)
            fwd, merge_s = [], []
            for _ in range(repeats):
                spent[0] = 0.0
                start = time.perf_counter()
                fn(x)
                fwd.append(time.perf_counter() - start)
                merge_s.append(spent[0])
            f, m = statistics.median(fwd), statistics.median(merge_s)
            results[s] = dict(forward_s=f, merge_s=m, fraction=m / f)
    return results


def environment_info() -> dict:
    """Versions and hardware of this run."""
    info = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        platform=platform.platform(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads())
    try:
        import mmpretrain
        info['mmpretrain'] = mmpretrain.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        import timm
        info['timm'] = timm.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        with open('/proc/cpuinfo') as f:
            names = [
                ln.split(':', 1)[1].strip() for ln in f
                if ln.startswith('model name')
            ]
        info['cpu'] = names[0] if names else platform.processor()
    except OSError:
        info['cpu'] = platform.processor()
    info['cpu_capability'] = torch.backends.cpu.get_cpu_capability()
    for var in ('OMP_NUM_THREADS', 'OMP_WAIT_POLICY', 'MKL_NUM_THREADS'):
        if os.environ.get(var):
            info[var] = os.environ[var]
    if hasattr(os, 'getloadavg'):
        info['loadavg_start'] = [round(v, 2) for v in os.getloadavg()]
    return info


def format_markdown(results: Dict[str, dict], meta: dict) -> str:
    """Markdown table of a :func:`run_benchmark` result."""
    first = next(iter(results))
    lines = [
        f"# ToMe inference throughput ({meta['arch']}, {meta['backend']}, "
        f"batch {meta['batch_size']}, {meta['img_size']} px, "
        f"{meta['env']['torch_threads']} threads)", '',
        f"Command: `{meta['command']}`", '',
        '| setting | r per block | tokens out | median s / batch | '
        f'images / s | speed-up vs {first} | CPU-time speed-up |',
        '| --- | --- | --- | --- | --- | --- | --- |'
    ]
    n0 = meta.get('num_tokens')
    for s, r in results.items():
        out = n0 - sum(r['r_list']) if n0 else ''
        lines.append(f"| {s} | {','.join(map(str, r['r_list']))} | {out} | "
                     f"{r['median_s']:.4f} | {r['images_per_s']:.1f} | "
                     f"{r['speedup']:.3f}x | {r['cpu_speedup']:.3f}x |")
    opts = meta.get('schedule_options') or {}
    if opts or meta.get('prop_attn'):
        lines += [
            '', "The config's ToMe backbone: `merge<N>` spread with "
            f"merge_inflect={opts.get('inflect', -0.5)}, schedule_compat="
            f"{opts.get('compat')}; proportional attention "
            f"{'on' if meta.get('prop_attn') else 'off'}."
        ]
    env = meta['env']
    lines += [
        '', f"Repeats: {meta['repeats']} (after {meta['warmup']} warm-up "
        'rounds), settings interleaved in rotating order; medians.', '',
        'Environment: ' + ', '.join(f'{k}={v}' for k, v in env.items()), ''
    ]
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'config',
        nargs='?',
        default=None,
        help='mmpretrain config whose backbone is timed (optional; replaces '
        '--arch and --backend)')
    parser.add_argument(
        '--arch',
        default='deit-small',
        help='mmpretrain arch, or timm model name with --backend timm')
    parser.add_argument(
        '--backend', default='mmpretrain', choices=['mmpretrain', 'timm'])
    parser.add_argument(
        '--img-size',
        type=int,
        default=None,
        help="input size (default: the config's, else 224)")
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument(
        '--threads', type=int, default=2, help='torch intra-op threads')
    parser.add_argument(
        '--settings',
        nargs='+',
        default=['none', 'merge49', 'merge98', 'r8'],
        help="'none', 'merge<N>' (MergeMix schedule) or 'r<N>' (ToMe r per "
        'block); ratios are against the first')
    parser.add_argument(
        '--repeats', type=int, default=10, help='timed rounds')
    parser.add_argument(
        '--warmup', type=int, default=2, help='untimed rounds first')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out-json', default=None)
    parser.add_argument('--out-md', default=None)
    args = parser.parse_args(argv)
    check_at_least_one(parser, args,
                       ('batch_size', 'threads', 'repeats', 'img_size'))
    if args.warmup < 0:
        parser.error(f'--warmup {args.warmup} must be >= 0')
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    schedule_options, prop_attn = None, False
    if args.config:
        from mergemix_mm.analysis import config_img_size
        backbone = build_config_backbone(args.config)
        # a config's ToMe backbone: its merge<N> spread and attention
        schedule_options = getattr(backbone, 'schedule_options', None)
        prop_attn = bool(getattr(backbone, 'prop_attn', False))
        model = _timed_module(backbone)
        args.arch, args.backend = args.config, (
            'mmpretrain' if hasattr(model, 'layers') else 'timm')
        size = config_img_size(model)
        if args.img_size is None:
            args.img_size = size
        elif (args.img_size != size and args.backend == 'timm'
              and not getattr(model, 'dynamic_img_size', False)):
            raise ValueError(
                f'--img-size {args.img_size} differs from the {size} px the '
                "config's timm model was built for; set the backbone's "
                'img_size (or dynamic_img_size=True) in the config')
    else:
        if args.img_size is None:
            args.img_size = 224
        model = build_model(args.arch, args.img_size, args.backend)
    from mergemix_mm.analysis import settings_schedules
    from mergemix_mm.models.tome import vit_geometry
    from mergemix_mm.utils.checkpoint_safety import atomic_write_text
    # every setting checked before the (long) timing loop starts
    schedules = settings_schedules(args.settings, model, args.img_size,
                                   schedule_options or {})
    geo = vit_geometry(model)
    grid = (args.img_size // geo.patch_size[0]) * (
        args.img_size // geo.patch_size[1])
    env = environment_info()
    results = run_benchmark(model, args.settings, args.batch_size,
                            args.img_size, args.repeats, args.warmup,
                            schedules=schedules, prop_attn=prop_attn)
    if hasattr(os, 'getloadavg'):
        env['loadavg_end'] = [round(v, 2) for v in os.getloadavg()]
    command = 'python ' + ' '.join([osp.relpath(sys.argv[0])] + list(
        sys.argv[1:] if argv is None else argv))
    meta = dict(
        command=command,
        arch=args.arch,
        backend=args.backend,
        batch_size=args.batch_size,
        img_size=args.img_size,
        repeats=args.repeats,
        warmup=args.warmup,
        num_tokens=grid + geo.num_extra_tokens,
        schedule_options=schedule_options or {},
        prop_attn=prop_attn,
        env=env)
    md = format_markdown(results, meta)
    print(md)
    if args.out_json:
        atomic_write_text(
            json.dumps(dict(meta=meta, results=results), indent=2),
            args.out_json)
    if args.out_md:
        atomic_write_text(md, args.out_md)
    return dict(meta=meta, results=results)


if __name__ == '__main__':
    run_cli(main)
