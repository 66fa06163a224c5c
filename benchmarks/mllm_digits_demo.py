"""CPU demo: SFT vs SFT + MergeMix SimPO on "Which digit is shown?".

A tiny random LLaVA (CLIP 32 px / patch 4 -> 64 visual tokens, ToMe merges 32
of them so the LLM sees 32; Llama 2 x 64; a byte-level BPE tokenizer trained
locally) learns to answer "Which digit is shown?" on the 1,347 training
digits embedded in scikit-learn, and is scored on the 450 held-out digits by
greedy decoding (exact match of the answer word) and by ranking the ten
answers by log-likelihood. Methods are interleaved per seed.

Protocols:

* ``scratch`` (default): every method trains the random model for
  ``--epochs`` epochs.
* ``finetune``: one SFT stage of ``--stage1-epochs`` per seed, then every
  method continues from that checkpoint for ``--epochs`` epochs at
  ``--lr2`` (the paper's post-training setting).

Methods: ``sft``, ``mergemix`` (paper defaults: loser with gradient, lam per
step, 0.5 SFT + 0.5 SimPO, beta 1), ``mergemix-nograd`` (loser under
no_grad), ``mixup``, ``cutmix``, ``resizemix``.

Usage::

    python benchmarks/mllm_digits_demo.py                      # committed run
    python benchmarks/mllm_digits_demo.py --seeds 0 --epochs 2  # quick look
"""
import argparse
import copy
import os.path as osp
import statistics
import sys
import time

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(__file__))

METHOD_ARGS = {
    'sft': ('sft', {}),
    'mergemix': ('mergemix', {}),
    'mergemix-nograd': ('mergemix', dict(loser_grad=False)),
    'mixup': ('mixup', {}),
    'cutmix': ('cutmix', {}),
    'resizemix': ('resizemix', {}),
}
LABELS = {
    'sft': 'SFT',
    'mergemix': 'SFT + MergeMix SimPO (defaults)',
    'mergemix-nograd': 'SFT + MergeMix SimPO, loser no_grad',
    'mixup': 'SFT + Mixup SimPO',
    'cutmix': 'SFT + CutMix SimPO',
    'resizemix': 'SFT + ResizeMix SimPO',
}


def parse_args(argv=None):
    from common import positive_int
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--methods', nargs='+',
                   default=['sft', 'mergemix', 'mergemix-nograd'],
                   choices=list(METHOD_ARGS))
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3])
    p.add_argument('--protocol', choices=['scratch', 'finetune'],
                   default='scratch')
    p.add_argument('--epochs', type=int, default=8)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--stage1-epochs', type=int, default=6)
    p.add_argument('--lr2', type=float, default=5e-4)
    p.add_argument('--merge-num', type=int, default=32)
    p.add_argument('--token-order', choices=['merged', 'raster'],
                   default='merged',
                   help='order of the merged visual tokens sent to the LLM '
                   '(MergeMixArguments.token_order)')
    p.add_argument('--threads', type=positive_int, default=1,
                   help='torch threads (1 is fastest for this tiny model on '
                   'a shared machine)')
    p.add_argument('--name', default=None,
                   help='result file name (default: mllm_digits_<protocol>)')
    p.add_argument('--out-dir', default=None)
    args = p.parse_args(argv)
    if len(set(args.seeds)) < len(args.seeds):
        p.error(f'--seeds {args.seeds} repeats a seed')
    return args


def _fmt(values):
    if len(values) == 1:
        return f'{100 * values[0]:.1f}'
    return (f'{100 * statistics.mean(values):.1f} ± '
            f'{100 * statistics.stdev(values):.1f}')


def main():
    args = parse_args()
    import torch
    import transformers
    from tqdm import tqdm

    from common import RESULTS, env_markdown, environment, md_table, \
        write_results
    from mergemix_mm.mllm.digits_demo import (DigitsDemoConfig,
                                              build_demo_model, digit_samples,
                                              run_digits_demo, train_digits)
    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    env['transformers'] = transformers.__version__
    train, test = digit_samples('train'), digit_samples('test')
    work = osp.join(ROOT, 'work_dirs', 'benchmarks', 'mllm_digits')
    runs = []
    t_start = time.perf_counter()
    jobs = [(s, m) for s in args.seeds for m in args.methods]
    stage1 = {}
    for seed, method in tqdm(jobs, desc='runs'):
        base, extra = METHOD_ARGS[method]
        init_state = None
        if args.protocol == 'finetune':
            if seed not in stage1:
                cfg1 = DigitsDemoConfig(
                    method='sft', seed=seed, epochs=args.stage1_epochs,
                    lr=args.lr, merge_num=args.merge_num,
                    extra=dict(token_order=args.token_order))
                tok, proc, wrapper = build_demo_model(cfg1)
                _, sec = train_digits(wrapper, tok, proc, train, cfg1, work)
                from mergemix_mm.mllm.digits_demo import evaluate_digits
                acc = evaluate_digits(wrapper, tok, proc, test)
                stage1[seed] = (copy.deepcopy(wrapper.vlm.state_dict()),
                                dict(acc, train_seconds=sec))
            init_state = stage1[seed][0]
        cfg = DigitsDemoConfig(
            method=base, seed=seed, merge_num=args.merge_num,
            epochs=args.epochs,
            lr=args.lr2 if args.protocol == 'finetune' else args.lr,
            extra=dict(extra, token_order=args.token_order))
        metrics = run_digits_demo(cfg, work, train, test,
                                  init_state=init_state)
        # the settings this run was built with (rebuilds it exactly)
        metrics.update(method=method, seed=seed, demo_config=vars(cfg))
        runs.append(metrics)
        tqdm.write(f'seed {seed} {method}: exact {metrics["exact_match"]:.4f}'
                   f' choice {metrics["choice_acc"]:.4f} '
                   f'({metrics["train_seconds"]:.0f} s)')
    wall = time.perf_counter() - t_start

    summary, rows = {}, []
    for method in args.methods:
        rs = [r for r in runs if r['method'] == method]
        exact = [r['exact_match'] for r in rs]
        choice = [r['choice_acc'] for r in rs]
        secs = [r['train_seconds'] for r in rs]
        summary[method] = dict(
            exact_mean=statistics.mean(exact),
            exact_std=statistics.stdev(exact) if len(exact) > 1 else 0.,
            choice_mean=statistics.mean(choice),
            choice_std=statistics.stdev(choice) if len(choice) > 1 else 0.,
            train_seconds_mean=statistics.mean(secs),
            per_seed_exact=exact)
        rows.append([
            LABELS[method], _fmt(exact), _fmt(choice),
            ', '.join(f'{100 * v:.1f}' for v in exact),
            f'{statistics.mean(secs):.0f}'
        ])
    protocol = (f'{args.epochs} epochs from random init, lr {args.lr}'
                if args.protocol == 'scratch' else
                f'{args.stage1_epochs} SFT epochs (lr {args.lr}), then '
                f'{args.epochs} epochs per method (lr {args.lr2})')
    md = [
        '# MLLM digits demo: SFT vs SFT + MergeMix SimPO (tiny LLaVA, CPU)',
        '',
        'Task: "Which digit is shown?" on the UCI digits bundled with '
        'scikit-learn (1,347 train / 450 held-out, fixed split). Tiny random '
        'LLaVA: CLIP 4 x 48 (32 px, patch 4, 64 patches; ToMe merges '
        f'{args.merge_num} so the LLM receives {64 - args.merge_num} visual '
        f'tokens, in {args.token_order} order), Llama 2 x 64, BPE tokenizer '
        f'trained locally. Batch 32, AdamW, cosine. Protocol: {protocol}. '
        'Held-out accuracy in %, mean '
        f'± std over seeds {args.seeds}.',
        '',
        md_table(['method', 'exact match (greedy)', '10-way choice',
                  'per-seed exact', 'train s/run'], rows),
        '',
    ]
    if stage1:
        md += ['SFT stage-1 checkpoints (start of every method): ' +
               ', '.join(f'seed {s}: {100 * v[1]["exact_match"]:.1f}'
                         for s, v in sorted(stage1.items())), '']
    md += [f'Total wall time: {wall / 60:.1f} min.', '', env_markdown(env),
           f'| transformers | {env["transformers"]} |']
    payload = dict(
        config=dict(vars(args)),
        env=env,
        runs=runs,
        summary=summary,
        stage1={s: v[1] for s, v in stage1.items()},
        wall_seconds=wall)
    name = args.name or f'mllm_digits_{args.protocol}'
    write_results(name, payload, '\n'.join(md), args.out_dir or RESULTS)


if __name__ == '__main__':
    main()
