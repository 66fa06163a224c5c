"""Label-fidelity benchmark: does the label weight a method assigns match how
much of each object is actually visible after mixing?

Images are generated so that the answer is known: a digit glyph (from the
UCI digits bundled with scikit-learn, 14-20 px, in a colour of its class)
sits at a random place on a random low-saturation textured background
(oriented gratings plus noise) at 32 px; its pixel mask is kept. After a
method mixes a batch, the visible fraction of each object is measured by
pushing the object masks through the *same* mixing (for content-dependent
methods: the method's own ``build_mix`` / ``apply_mix`` decisions; for
mmpretrain's content-agnostic Mixup / CutMix / ResizeMix: extra mask
channels through the unchanged augment, separated by linearity). For a
pair (own ``i``, partner ``j``):

* ``v_i`` = visible share of object ``i``'s pixels (a Mixup blend of weight
  ``lam`` counts as ``lam``; a resized partner counts relative to its
  shrunk size),
* truth ``t_i = v_i / (v_i + v_j)``, and the method's label weight
  ``l_i`` = the mixed score of class ``y_i`` (every batch holds 10 images of
  10 distinct classes, so ``l_i`` is read off the scores exactly).

Reported per method: MAE ``mean |l - t|``, bias ``mean (l - t)`` and the
share of samples labelled on the wrong side of 0.5. Attention-based methods
use one fixed tiny ViT (the digits architecture) trained without mixing on
the generated images, in eval mode; TransMix and MixPro re-score through
their ``forward_and_rescore`` as in training.

Command (about 4 minutes on 2 CPU cores)::

    python benchmarks/label_fidelity.py --batches 100
"""
import argparse
import os
import os.path as osp
import random
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

import common  # noqa: E402

#: Extra variants reported next to the method table.
VARIANTS = {
    'transmix-paper': ('TransMix (ratio=0, original paper)', 'transmix',
                       dict(type='TransMix', alpha=1.0, ratio=0.0)),
    'mergemix-rescaled': ('MergeMix (lam_scale=True: OpenMixup CIFAR label '
                          're-scaling, batch-mean)', 'mergemix', None),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batches', type=common.positive_int, default=100,
                        help='batches of 10 (one image per class)')
    parser.add_argument('--methods', nargs='+', default=None)
    parser.add_argument('--seed', type=common.non_negative_int, default=0)
    parser.add_argument('--train-images', type=int, default=2000,
                        help='at least 64 (one training batch)')
    parser.add_argument('--train-epochs', type=common.positive_int,
                        default=4)
    parser.add_argument('--threads', type=common.positive_int, default=1,
                        help='torch threads (1 is robust on a shared machine)')
    parser.add_argument('--out', default=common.RESULTS)
    parser.add_argument('--name', default='label_fidelity')
    args = parser.parse_args(argv)
    if args.train_images < 64:
        parser.error(f'--train-images {args.train_images} must be >= 64 '
                     '(one training batch)')
    return args


# ----------------------------------------------------------------------
# data
#: One saturated colour per class (the object's colour carries the class
#: evidence together with its glyph; the background carries none).
PALETTE = np.array([[0.95, 0.1, 0.1], [0.1, 0.85, 0.1], [0.15, 0.3, 0.95],
                    [0.95, 0.9, 0.1], [0.9, 0.1, 0.9], [0.1, 0.9, 0.9],
                    [0.98, 0.55, 0.05], [0.5, 0.15, 0.9], [0.05, 0.05, 0.05],
                    [1.0, 1.0, 1.0]])


def make_textured_objects(n: int, size: int = 32, seed: int = 0,
                          obj_size=(14, 20)):
    """Digit glyphs of known position on textured backgrounds.

    Each image shows one glyph of its class (UCI digits, 14-20 px, in the
    class's colour from :data:`PALETTE` with a small jitter) at a uniform
    position on a low-saturation background of random oriented gratings and
    noise. The object's pixel mask is returned with the image.

    Returns:
        tuple: uint8 images ``[n, size, size, 3]``, int64 labels ``[n]``,
        bool object masks ``[n, size, size]``.
    """
    from sklearn.datasets import load_digits
    digits = load_digits()
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), bool)
    labels = np.empty(n, np.int64)
    for i in range(n):
        k = rng.randint(len(digits.images))
        labels[i] = digits.target[k]
        tex = np.zeros((size, size), np.float32)
        for _ in range(3):
            theta, freq = rng.uniform(0, np.pi), rng.uniform(2, 8)
            phase = rng.uniform(0, 2 * np.pi)
            tex += np.sin(2 * np.pi * freq *
                          (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
        tex = tex / 3 + 0.3 * rng.randn(size, size)
        grey = rng.uniform(0.35, 0.65)
        base = grey + rng.uniform(-0.05, 0.05, 3)
        img = base + rng.uniform(0.08, 0.15) * tex[..., None]
        s = rng.randint(obj_size[0], obj_size[1] + 1)
        glyph = torch.from_numpy(digits.images[k] / 16.0).float()[None, None]
        glyph = F.interpolate(glyph, size=(s, s), mode='bilinear',
                              align_corners=False)[0, 0].numpy()
        obj = glyph > 0.35
        top, left = rng.randint(0, size - s + 1, 2)
        colour = np.clip(PALETTE[labels[i]] + rng.uniform(-0.1, 0.1, 3), 0,
                         1)
        img[top:top + s, left:left + s][obj] = colour
        masks[i, top:top + s, left:left + s] = obj
        images[i] = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    return images, labels, masks


def _to_inputs(images: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> normalised float NCHW (the digits preprocessor)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    return (x - 127.5) / 127.5


# ----------------------------------------------------------------------
# the fixed model
def fixed_model(args):
    """The digits tiny ViT trained without mixing on generated images
    (cached under ``work_dirs/benchmarks``)."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import set_random_seed
    from mmpretrain.structures import DataSample
    cfg = common.load_config('vanilla', 'digits')
    set_random_seed(args.seed)
    model = common.build_model(cfg)
    key = f'fidelity_vit_s{args.seed}_n{args.train_images}_' \
          f'e{args.train_epochs}.pth'
    path = osp.join(common.CACHE, key)
    images, labels, _ = make_textured_objects(args.train_images + 1000,
                                              seed=args.seed + 1000)
    train_x, train_y = images[:args.train_images], labels[:args.train_images]
    test_x, test_y = images[args.train_images:], labels[args.train_images:]
    if osp.exists(path):
        model.load_state_dict(torch.load(path, map_location='cpu'))
    else:
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        g = torch.Generator().manual_seed(args.seed)
        model.train()
        steps = args.train_epochs * (len(train_x) // 64)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optim.optimizer, max_lr=1e-3, total_steps=steps,
            pct_start=0.1)
        for _ in tqdm(range(args.train_epochs), desc='fixed model epochs'):
            order = torch.randperm(len(train_x), generator=g).numpy()
            for b in range(len(train_x) // 64):
                idx = order[b * 64:(b + 1) * 64]
                data = dict(
                    inputs=list(
                        torch.from_numpy(train_x[idx]).permute(0, 3, 1, 2)),
                    data_samples=[
                        DataSample().set_gt_label(int(y))
                        for y in train_y[idx]
                    ])
                model.train_step(data, optim)
                sched.step()
        os.makedirs(common.CACHE, exist_ok=True)
        torch.save(model.state_dict(), path)
    model.eval()
    with torch.no_grad():
        logits = model(_to_inputs(test_x), mode='tensor')
    acc = float((logits.argmax(1).numpy() == test_y).mean() * 100)
    return cfg, model, acc


# ----------------------------------------------------------------------
# visibility through one method
def _seed(s: int) -> None:
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def _partner_from_scores(scores, labels):
    """Partner index from mixed scores of a batch with distinct classes."""
    n = len(labels)
    cls_to_idx = {int(c): i for i, c in enumerate(labels)}
    idx = torch.arange(n)
    s = scores.clone()
    s[torch.arange(n), labels] = 0
    for i in range(n):
        if float(s[i].max()) > 1e-6:
            idx[i] = cls_to_idx[int(s[i].argmax())]
    return idx


def evaluate_method(aug, model, x, y, obj):
    """Assigned label weights and visible fractions for one batch.

    Returns:
        tuple: ``(assigned [B], v_own [B], v_partner [B])``.
    """
    from mergemix_mm.models.batch_augments import MixRecord, PlannedMix
    B = len(x)
    onehot = F.one_hot(y, 10).float()
    ar = torch.arange(B)
    obj_map = obj[:, None].float()
    zeros = torch.zeros_like(obj_map)
    if isinstance(aug, PlannedMix):
        plan = aug.build_mix(x, onehot)
        idx = plan['index']
        own_map = aug.apply_mix(obj_map, zeros, plan)
        partner_map = aug.apply_mix(zeros, obj_map[idx], plan)
        scale = plan.get('partner_area_scale', 1.0)
        lam = plan['lam'].float()
        if getattr(aug, 'needs_train_forward', False) and \
                getattr(aug, 'attention_label', True):
            record = MixRecord(aug, x, onehot, idx, plan['lam'],
                               plan['mask'])
            mixed = aug.apply_mix(x, x[idx], plan)
            with torch.no_grad():
                _, scores = aug.forward_and_rescore(model, mixed, record)
            lam = scores[ar, y]
    elif hasattr(aug, 'build_mix'):  # MergeMix-style dict plans
        plan = aug.build_mix(x)
        idx = plan['index']
        if plan.get('mask') is None:
            w = plan['lam_draw'].float()[:, None, None, None]
            own_map, partner_map = w * obj_map, (1 - w) * obj_map[idx]
        else:
            m = plan['mask'].float()
            own_map, partner_map = m * obj_map, (1 - m) * obj_map[idx]
        scale, lam = 1.0, plan['lam'].float()
    else:  # content-agnostic black box: mask channels through the augment
        c = (ar + 1).float()[:, None, None, None]
        stacked = torch.cat([x, obj_map, c * obj_map], dim=1)
        mixed, scores = aug(stacked, onehot)
        lam = scores[ar, y]
        idx = _partner_from_scores(scores, y)
        comb1, comb2 = mixed[:, 3:4], mixed[:, 4:5]
        cj = c[idx]
        self_pair = (idx == ar)[:, None, None, None]
        own_map = torch.where(self_pair, comb1,
                              (comb2 - cj * comb1) / (c - cj + self_pair))
        partner_map = torch.where(self_pair, zeros, comb1 - own_map)
        resize = 'ResizeMix' in type(getattr(aug, 'last', aug)).__name__
        scale = (1 - lam) if resize else 1.0
    own_total = obj_map.flatten(1).sum(1)
    v_own = own_map.flatten(1).sum(1) / own_total
    scale = torch.as_tensor(scale, dtype=torch.float32)
    v_partner = partner_map.flatten(1).sum(1) / (
        own_total[idx] * scale).clamp_min(1e-6)
    return lam.float(), v_own.clamp(0, 1), v_partner.clamp(0, 1)


class _Chosen:
    """Wraps RandomBatchAugment to remember which augment ran."""

    def __init__(self, rba):
        self.rba = rba
        self.last = None

    def __call__(self, x, y):
        aug_index = np.random.choice(len(self.rba.augments),
                                     p=self.rba.probs)
        self.last = self.rba.augments[aug_index]
        if self.last is None:
            return x, y.float()
        return self.last(x, y)


def build_augment(name, cfg, model):
    """The augment under test, bound to ``model``."""
    if name in VARIANTS:
        _, base, aug_cfg = VARIANTS[name]
        base_cfg = common.load_config(base, 'digits')
        train_cfg = common.pure_train_cfg(base, base_cfg)
        if aug_cfg is None:  # MergeMix with the re-scaled label
            aug_cfg = dict(train_cfg['augments'][0])
            aug_cfg.update(lam_scale=True, lam_reduction='batch')
        train_cfg = dict(augments=[aug_cfg])
    else:
        train_cfg = common.pure_train_cfg(name, cfg)
    common.set_batch_augments(model, train_cfg)
    rba = model.data_preprocessor.batch_augments
    if len(rba.augments) == 1 and rba.probs is None:
        return rba.augments[0]
    return _Chosen(rba)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import mergemix_mm  # noqa: F401
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='WARNING')
    try:  # before minutes of training the fixed model
        methods = common.select_methods(args.methods, skip=('vanilla', ))
    except ValueError as err:
        raise SystemExit(f'--methods: {err}') from None
    env = common.environment(args.threads)
    t0 = time.perf_counter()
    _, model, model_acc = fixed_model(args)
    train_time = time.perf_counter() - t0

    names = list(methods)
    for v, (_, base, _) in VARIANTS.items():
        if base in methods:
            names.insert(names.index(base) + 1, v)
    images, labels, masks = make_textured_objects(
        max(2000, 40 * args.batches), seed=args.seed + 7)
    rng = np.random.RandomState(args.seed)
    by_class = [np.flatnonzero(labels == c) for c in range(10)]
    batches = [
        np.array([rng.choice(by_class[c]) for c in range(10)])
        for _ in range(args.batches)
    ]
    results = {}
    for name in tqdm(names, desc='methods'):
        cfg = common.load_config(VARIANTS[name][1] if name in VARIANTS else
                                 name, 'digits')
        aug = build_augment(name, cfg, model)
        lam, truth, v_own_all, v_par_all = [], [], [], []
        t_m = time.perf_counter()
        for b, idx in enumerate(batches):
            x = _to_inputs(images[idx])
            y = torch.from_numpy(labels[idx])
            obj = torch.from_numpy(masks[idx])
            _seed(args.seed * 100003 + b)
            assigned, v_own, v_par = evaluate_method(aug, model, x, y, obj)
            total = v_own + v_par
            t = torch.where(total > 0, v_own / total.clamp_min(1e-9),
                            torch.full_like(total, 0.5))
            lam.append(assigned)
            truth.append(t)
            v_own_all.append(v_own)
            v_par_all.append(v_par)
        lam, truth = torch.cat(lam), torch.cat(truth)
        err = lam - truth
        results[name] = dict(
            label=VARIANTS[name][0] if name in VARIANTS else
            common.METHODS[name],
            mae=float(err.abs().mean()),
            mae_std=float(err.abs().std()),
            bias=float(err.mean()),
            wrong_side=float(((lam - 0.5) * (truth - 0.5) < 0).float().mean()),
            mean_label=float(lam.mean()),
            mean_truth=float(truth.mean()),
            mean_visible_own=float(torch.cat(v_own_all).mean()),
            mean_visible_partner=float(torch.cat(v_par_all).mean()),
            samples=int(len(lam)),
            time_s=time.perf_counter() - t_m)
        tqdm.write(f"{name:24s} MAE {results[name]['mae']:.3f} "
                   f"bias {results[name]['bias']:+.3f}")

    payload = dict(
        benchmark='label_fidelity',
        config=dict(
            batches=args.batches,
            batch='10 images, one per class',
            seed=args.seed,
            image_size=32,
            object='UCI digit glyph 14-20 px in its class colour, '
            'low-saturation textured background',
            fixed_model=dict(
                arch='configs/_base_/models/vit-tiny-p4_digits-32px.py',
                train_images=args.train_images,
                train_epochs=args.train_epochs,
                held_out_accuracy=model_acc,
                train_time_s=train_time)),
        environment=env,
        results=results,
        wall_time_s=time.perf_counter() - t0)
    order = sorted(names, key=lambda n: results[n]['mae'])
    rows = [[
        results[n]['label'], f"{results[n]['mae']:.3f}",
        f"{results[n]['bias']:+.3f}", f"{100 * results[n]['wrong_side']:.1f}",
        f"{results[n]['mean_visible_own']:.2f}",
        f"{results[n]['mean_visible_partner']:.2f}"
    ] for n in order]
    md = [
        '# Label fidelity: assigned label weight vs visible object share',
        '',
        f'{args.batches} batches x 10 generated images (one per class, '
        'digit glyph on a textured background, 32 px); each method alone '
        '(probability 1). Truth = v_own / (v_own + v_partner) from the '
        'object masks pushed through the same mixing. Attention-based '
        'methods use one fixed tiny ViT trained without mixing on the '
        f'generated images (held-out accuracy {model_acc:.1f}%), in eval '
        'mode. Lower MAE is better; "wrong side" = label and truth on '
        'opposite sides of 0.5. Sorted by MAE.', '',
        common.md_table([
            'method', 'MAE', 'bias (label - truth)', 'wrong side (%)',
            'visible own', 'visible partner'
        ], rows), '',
        'Mixup blends are counted as visible with their blend weight, so '
        'its MAE is 0 by construction. ResizeMix counts the shrunk partner '
        'relative to its shrunk size.', '', '## Run', '',
        f"Total wall time {payload['wall_time_s'] / 60:.1f} min (fixed "
        f'model {train_time / 60:.1f} min).', '',
        common.env_markdown(env)
    ]
    common.write_results(args.name, payload, '\n'.join(md), args.out)


if __name__ == '__main__':
    main()
