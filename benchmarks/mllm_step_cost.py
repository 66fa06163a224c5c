"""Step cost of SFT + MergeMix SimPO vs SFT on tiny LLaVA models (CPU).

One training step = forward + backward + AdamW step of
:class:`~mergemix_mm.mllm.MergeMixVLM` on a pre-collated batch of real
digit conversations (data loading excluded). The methods run interleaved,
step by step, in the same process on the same model, so machine load hits
them alike; the median step time and its ratio to the SFT step are reported.
The MergeMix step adds the loser: a second vision-tower pass, the mask and
a second LLM pass (the winner and loser rows share one LLM call), so about
2x SFT is expected; with ``loser no_grad`` the loser costs a forward only.

Settings:

* ``tiny``: the digits-demo model (CLIP 4 x 48 at 32 px / patch 4, ToMe
  merges 32 of 64 tokens; Llama 2 x 64), batch 32.
* ``small``: CLIP 4 x 64 at 64 px / patch 4 (256 patches, ToMe merges 128),
  Llama 4 x 256, batch 16.

Usage::

    python benchmarks/mllm_step_cost.py [--steps 30] [--settings tiny small]
"""
import argparse
import os.path as osp
import statistics
import sys
import time

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(__file__))

SETTINGS = {
    'tiny': dict(img_size=32, patch_size=4, vision_hidden=48,
                 vision_layers=4, text_hidden=64, text_layers=2,
                 text_heads=4, merge_num=32, batch_size=32),
    'small': dict(img_size=64, patch_size=4, vision_hidden=64,
                  vision_layers=4, text_hidden=256, text_layers=4,
                  text_heads=8, merge_num=128, batch_size=16),
}
METHODS = {
    'sft': dict(method='sft'),
    'mergemix': dict(method='mergemix'),
    'mergemix-nograd': dict(method='mergemix', loser_grad=False),
    'mixup': dict(method='mixup'),
    'cutmix': dict(method='cutmix'),
    'resizemix': dict(method='resizemix'),
}


def parse_args(argv=None):
    from common import positive_int
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--settings', nargs='+', default=['tiny', 'small'],
                   choices=list(SETTINGS))
    p.add_argument('--methods', nargs='+', default=list(METHODS),
                   choices=list(METHODS))
    p.add_argument('--steps', type=positive_int, default=30,
                   help='timed steps per method (after 3 warm-up steps)')
    p.add_argument('--threads', type=positive_int, default=1)
    p.add_argument('--name', default='mllm_step_cost')
    p.add_argument('--out-dir', default=None)
    return p.parse_args(argv)


def main():
    args = parse_args()
    import torch
    import transformers

    from common import RESULTS, env_markdown, environment, md_table, \
        write_results
    from mergemix_mm.mllm import (ConversationCollator, MergeMixArguments,
                                  MergeMixVLM, build_tiny_llava,
                                  train_tiny_tokenizer)
    from mergemix_mm.mllm.digits_demo import (DIGIT_QUESTION, DIGIT_WORDS,
                                              digit_samples)
    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    env['transformers'] = transformers.__version__
    results = {}
    md = ['# MLLM step cost: SFT + MergeMix SimPO vs SFT (tiny LLaVA, CPU)',
          '', __doc__.split('\n\n')[1].replace('\n', ' '), '']
    for setting in args.settings:
        s = SETTINGS[setting]
        corpus = [f'USER: {DIGIT_QUESTION} ASSISTANT: {w}'
                  for w in DIGIT_WORDS] * 20
        tok = train_tiny_tokenizer(corpus, vocab_size=384)
        vlm, proc = build_tiny_llava(
            tok, image_size=s['img_size'], patch_size=s['patch_size'],
            vision_hidden=s['vision_hidden'],
            vision_layers=s['vision_layers'], text_hidden=s['text_hidden'],
            text_layers=s['text_layers'], text_heads=s['text_heads'])
        wrappers = {
            m: MergeMixVLM(vlm, MergeMixArguments(merge_num=s['merge_num'],
                                                  **kw)).train()
            for m, kw in METHODS.items() if m in args.methods
        }
        any_wrapper = next(iter(wrappers.values()))
        collator = ConversationCollator(
            tok, proc, num_image_tokens=any_wrapper.num_visual_tokens(),
            image_size=s['img_size'], system_prompt='')
        samples = digit_samples('train', s['img_size'])
        bs = s['batch_size']
        batches = [collator(samples[i * bs:(i + 1) * bs]) for i in range(8)]
        opt = torch.optim.AdamW(vlm.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(0)
        times = {m: [] for m in wrappers}

        def step(method, i):
            batch = batches[i % len(batches)]
            lam = float(torch.rand((), generator=gen))
            t0 = time.perf_counter()
            out = wrappers[method](**batch, lam=lam)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return time.perf_counter() - t0

        for i in range(3):
            for m in wrappers:
                step(m, i)
        for i in range(args.steps):
            order = list(wrappers) if i % 2 == 0 else list(wrappers)[::-1]
            for m in order:
                times[m].append(step(m, i))
        base = statistics.median(times['sft']) if 'sft' in times else None
        rows, res = [], {}
        for m, ts in times.items():
            med = statistics.median(ts)
            ratio = med / base if base else None
            res[m] = dict(median_s=med, mean_s=statistics.mean(ts),
                          ratio_vs_sft=ratio, times_s=ts)
            rows.append([m, f'{1000 * med:.1f}',
                         f'{ratio:.2f}x' if ratio else '-'])
        seq = batches[0]['input_ids'].shape[1]
        results[setting] = dict(
            setting=s, seq_len=seq,
            visual_tokens=any_wrapper.num_visual_tokens(), methods=res)
        md += [
            f'## {setting}: batch {bs}, {any_wrapper.num_visual_tokens()} '
            f'visual tokens (ToMe merges {s["merge_num"]}), sequence {seq}',
            '', md_table(['method', 'median step (ms)', 'ratio to SFT'],
                         rows), ''
        ]
        print('\n'.join(md[-4:]))
    md += [f'{args.steps} timed steps per method, interleaved, after 3 '
           'warm-up steps; lam ~ U(0, 1) per step.', '', env_markdown(env),
           f'| transformers | {env["transformers"]} |']
    write_results(args.name, dict(config=vars(args), env=env,
                                  results=results), '\n'.join(md),
                  args.out_dir or RESULTS)


if __name__ == '__main__':
    main()
