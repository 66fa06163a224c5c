"""What a batch augment does to a batch, as pictures (Fig. 3 of the paper).

:func:`describe_mix` runs one batch augment on a normalised batch and returns
a :class:`MixView`: own and partner images, the saliency that guided the mix
(when the method has one), the pixel mask, the mixed images and the soft
labels. Augments that expose ``build_mix`` (MergeMix and this package's
baselines) report their decisions exactly; for any other callable
(mmpretrain's ``Mixup``, ``CutMix``, ...) the augment is simply called and the
partner and mask are *estimated* from the mixed images (see
:func:`estimate_partners`). :func:`plot_mix_grid` draws a view with
matplotlib's Agg backend.
"""
import inspect
from contextlib import nullcontext
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.batch_augments.base import MixRecord, mix_scores
from ..utils.checkpoint_safety import atomic_save_figure

__all__ = [
    'MixView', 'denormalize', 'describe_mix', 'estimate_partners',
    'plot_mix_grid', 'plot_mixed_batch', 'label_weights_text',
    'pair_weights_text', 'augment_repr'
]


@dataclass
class MixView:
    """One batch augment applied to one batch.

    Attributes:
        name (str): The augment's type name.
        inputs (Tensor): Own images ``[B, C, H, W]`` (normalised).
        index (Tensor): ``[B]`` partner of each row.
        mixed (Tensor): Mixed images ``[B, C, H, W]``.
        labels (Tensor): ``[B]`` own classes.
        scores (Tensor): ``[B, K]`` soft labels of the mixed images (what
            the loss is trained on, including attention re-scoring).
        lam (Tensor, optional): ``[B]`` label weight of the own image (None
            when it cannot be told, e.g. estimated same-class pairs).
        mask (Tensor, optional): ``[B, 1, H, W]`` weight of the own image
            per pixel (NaN where an estimate is undefined).
        saliency (Tensor, optional): ``[B, h, w]`` map that guided the mix.
        saliency_of (str): ``'own'`` or ``'partner'``: which image the
            saliency belongs to.
        estimated (bool): Partner and mask were estimated from the output.
    """
    name: str
    inputs: torch.Tensor
    index: torch.Tensor
    mixed: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    lam: Optional[torch.Tensor] = None
    mask: Optional[torch.Tensor] = None
    saliency: Optional[torch.Tensor] = None
    saliency_of: str = 'own'
    estimated: bool = False


def denormalize(inputs: torch.Tensor,
                data_preprocessor: Optional[nn.Module] = None,
                bgr: bool = False) -> torch.Tensor:
    """Undo the data preprocessor's normalisation for display.

    ``x * std + mean`` with the preprocessor's ``mean`` / ``std`` buffers
    (when it normalises), then scaled to [0, 1]: divided by 255 when the
    batch is in pixel units (max > 1.5), and clipped.

    Args:
        inputs (Tensor): ``[B, C, H, W]`` normalised images.
        data_preprocessor (nn.Module, optional): mmpretrain's
            ``ClsDataPreprocessor`` (or anything with ``mean``/``std``).
            Defaults to None (no normalisation to undo).
        bgr (bool): The tensor is in BGR order (a config with
            ``to_rgb=False`` that loads images with OpenCV); flip it to RGB.
            Defaults to False.

    Returns:
        Tensor: ``[B, C, H, W]`` float in [0, 1] on the CPU.
    """
    x = inputs.detach().float().cpu()
    mean = getattr(data_preprocessor, 'mean', None)
    std = getattr(data_preprocessor, 'std', None)
    if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor):
        x = x * std.detach().float().cpu().view(1, -1, 1, 1) + \
            mean.detach().float().cpu().view(1, -1, 1, 1)
    finite = x[torch.isfinite(x)]
    if finite.numel() and float(finite.max()) > 1.5:
        x = x / 255.0
    if bgr and x.shape[1] == 3:
        x = x.flip(1)
    return x.clamp(0, 1)


def estimate_partners(inputs: torch.Tensor,
                      mixed: torch.Tensor,
                      labels: torch.Tensor,
                      scores: torch.Tensor,
                      eps: float = 1e-6):
    """Guess partner and per-pixel mask of a mix that reports neither.

    Every mixed pixel is assumed to be ``m * own + (1 - m) * partner``. For
    each candidate partner ``j`` the least-squares ``m`` is solved per pixel
    over the channels and clipped to [0, 1]; the candidate with the smallest
    residual wins. Only images of the class that the soft label adds are
    candidates (of the own class, the image itself included, when it adds
    none). Exact for Mixup and CutMix; an
    approximation for mixes that resize or move content (ResizeMix).

    Args:
        inputs (Tensor): ``[B, C, H, W]`` own images.
        mixed (Tensor): ``[B, C, H, W]`` mixed images.
        labels (Tensor): ``[B]`` own classes.
        scores (Tensor): ``[B, K]`` soft labels of the mixed images.
        eps (float): Pixels where own and partner differ by less than this
            (squared, over channels) get an undefined (NaN) mask.
            Defaults to 1e-6.

    Returns:
        tuple: ``(index [B], mask [B, 1, H, W])``.
    """
    B = inputs.shape[0]
    index = torch.empty(B, dtype=torch.long, device=inputs.device)
    masks = []
    arange = torch.arange(B, device=inputs.device)
    for i in range(B):
        y = int(labels[i])
        other = scores[i].clone()
        other[y] = 0
        # all label mass on the own class: the partner shares it
        cls = int(other.argmax()) if float(other.max()) > 1e-6 else y
        cand = arange[labels == cls]
        if cand.numel() == 0:
            cand = arange
        d = inputs[i:i + 1] - inputs[cand]  # own - partner
        r = mixed[i:i + 1] - inputs[cand]  # mixed - partner
        dd = (d * d).sum(1, keepdim=True)
        valid = dd > eps
        m = torch.where(valid,
                        (r * d).sum(1, keepdim=True) / dd.clamp_min(eps),
                        torch.zeros_like(dd)).clamp(0, 1)
        resid = (r - m * d).pow(2).flatten(1).sum(1)
        best = int(resid.argmin())
        index[i] = cand[best]
        undefined = torch.full_like(m[best], float('nan'))
        masks.append(torch.where(valid[best], m[best], undefined))
    return index, torch.stack(masks)


def _call_build_mix(augment, inputs: torch.Tensor,
                    scores: torch.Tensor) -> dict:
    params = inspect.signature(augment.build_mix).parameters
    if 'batch_score' in params:
        return augment.build_mix(inputs, scores)
    return augment.build_mix(inputs)


def _plan_mixed(augment, inputs: torch.Tensor, plan: dict) -> torch.Tensor:
    index = plan['index']
    if plan.get('linear'):  # MergeMix's lam_margin branch: linear Mixup
        lam = plan['lam_draw'].to(inputs.dtype).view(-1, 1, 1, 1)
        return lam * inputs + (1 - lam) * inputs[index]
    if hasattr(augment, 'apply_mix'):
        return augment.apply_mix(inputs, inputs[index], plan)
    mask = plan.get('mask')
    if mask is None:
        raise ValueError(
            f'{type(augment).__name__}.build_mix returned neither a mask nor '
            'a linear mix; cannot draw the mixed images.')
    mask = mask.to(inputs.dtype)
    return mask * inputs + (1 - mask) * inputs[index]


def _plan_saliency(augment, inputs: torch.Tensor, plan: dict):
    """(saliency [B, h, w] or None, whose image it belongs to)."""
    from ..models.batch_augments import AttentiveCutMix, SaliencyMix
    index = plan['index']
    if isinstance(augment, SaliencyMix):
        with torch.no_grad():
            return augment.saliency(inputs[index]), 'partner'
    scores = plan.get('scores')
    patch_mask = plan.get('patch_mask')
    if isinstance(scores, torch.Tensor) and isinstance(patch_mask,
                                                       torch.Tensor):
        return scores.reshape(patch_mask.shape), 'own'
    for key in ('saliency', 'activation'):
        sal = plan.get(key)
        if isinstance(sal, torch.Tensor) and sal.ndim == 3:
            if isinstance(augment, AttentiveCutMix):
                return sal[index], 'partner'
            return sal, 'own'
    return None, 'own'


def _lam_from_scores(scores: torch.Tensor, labels: torch.Tensor,
                     index: torch.Tensor,
                     fallback: Optional[torch.Tensor]) -> torch.Tensor:
    """Own weight read from soft labels where the pair's classes differ."""
    own = scores.gather(1, labels[:, None].to(scores.device))[:, 0]
    differ = labels != labels[index]
    if fallback is None:
        fallback = torch.full_like(own, float('nan'))
    return torch.where(differ.to(own.device), own,
                       fallback.to(own.device, own.dtype))


def describe_mix(augment,
                 inputs: torch.Tensor,
                 labels: torch.Tensor,
                 num_classes: int,
                 model: Optional[nn.Module] = None) -> MixView:
    """Apply ``augment`` to a batch and collect everything worth drawing.

    Args:
        augment: A batch augment (``build_mix`` is used when present).
        inputs (Tensor): ``[B, C, H, W]`` normalised images, B >= 2.
        labels (Tensor): ``[B]`` classes.
        num_classes (int): K, for the one-hot scores.
        model (nn.Module, optional): The classifier, for augments that
            re-score labels from the training forward (TransMix, MixPro's
            PAL). Defaults to None (area labels are shown).

    Returns:
        MixView: The view.

    Raises:
        ValueError: For a batch of fewer than two images.
    """
    if inputs.ndim != 4 or inputs.shape[0] < 2:
        raise ValueError(
            'describe_mix needs a batch [B, C, H, W] with B >= 2 (one image '
            f'cannot be mixed); got shape {tuple(inputs.shape)}.')
    labels = labels.to(inputs.device).long()
    onehot = F.one_hot(labels, num_classes).float()
    name = type(augment).__name__
    with torch.no_grad():
        if not hasattr(augment, 'build_mix'):
            # a clone: some augments (mmpretrain's CutMix) write in place
            mixed, scores = augment(inputs.clone(), onehot.clone())
            mixed, scores = mixed.detach(), scores.detach().float()
            index, mask = estimate_partners(inputs, mixed, labels, scores)
            return MixView(name=name,
                           inputs=inputs,
                           index=index,
                           mixed=mixed,
                           labels=labels,
                           scores=scores,
                           lam=_lam_from_scores(scores, labels, index, None),
                           mask=mask,
                           estimated=True)
        plan = _call_build_mix(augment, inputs.clone(), onehot.clone())
        index = plan['index'].to(inputs.device)
        lam = plan['lam'].float().to(inputs.device)
        mixed = _plan_mixed(augment, inputs, plan)
        scores = mix_scores(onehot, index, lam)
        rescore = getattr(augment, 'needs_train_forward', False) and \
            getattr(augment, 'attention_label', True) and model is not None
        if rescore:
            record = MixRecord(source=augment,
                               clean_inputs=inputs,
                               clean_scores=onehot,
                               index=index,
                               lam=lam,
                               mask=plan.get('mask'))
            context = getattr(model, '_merge_context', nullcontext)
            with context():
                _, scores = augment.forward_and_rescore(model, mixed, record)
            scores = scores.detach().float()
            lam = _lam_from_scores(scores, labels, index, lam)
        saliency, saliency_of = _plan_saliency(augment, inputs, plan)
        mask = plan.get('mask')
        return MixView(name=name,
                       inputs=inputs,
                       index=index,
                       mixed=mixed,
                       labels=labels,
                       scores=scores,
                       lam=lam,
                       mask=None if mask is None else mask.float(),
                       saliency=None if saliency is None else saliency.float(),
                       saliency_of=saliency_of,
                       estimated=False)


def augment_repr(augment) -> str:
    """The augment's ``repr``, or ``Type(attr=value, ...)`` of its public
    scalar attributes when it has no ``__repr__`` of its own (mmpretrain's
    Mixup / CutMix)."""
    cls = type(augment)
    if cls.__repr__ is not object.__repr__:
        return repr(augment)
    simple = (bool, int, float, str, type(None))
    attrs = []
    for key, value in vars(augment).items():
        if key.startswith('_'):
            continue
        if isinstance(value, simple) or (isinstance(value, tuple) and all(
                isinstance(v, simple) for v in value)):
            attrs.append(f'{key}={value!r}')
    return f"{cls.__name__}({', '.join(attrs)})"


def label_weights_text(scores: torch.Tensor,
                       class_names: Optional[Sequence[str]] = None,
                       top: int = 2) -> str:
    """``'3: 0.62  7: 0.38'``: the largest weights of one soft label."""
    vals, idx = scores.float().topk(min(top, scores.numel()))
    parts = []
    for v, c in zip(vals.tolist(), idx.tolist()):
        if v <= 1e-4:
            continue
        name = class_names[c] if class_names else str(c)
        parts.append(f'{name}: {v:.2f}')
    return '  '.join(parts)


def pair_weights_text(scores: torch.Tensor,
                      own: int,
                      partner: int,
                      class_names: Optional[Sequence[str]] = None) -> str:
    """``'5: 0.44 + 2: 0.56'``: the soft label's weights of the own and the
    partner class (own first), or the top weights when the pair shares a
    class or the label has other mass (label smoothing, three-way mixes)."""
    name = (lambda c: class_names[c]) if class_names else str
    if own == partner:
        return label_weights_text(scores, class_names)
    w_own, w_partner = float(scores[own]), float(scores[partner])
    if abs(w_own + w_partner - float(scores.sum())) > 1e-3:
        return label_weights_text(scores, class_names)
    return f'{name(own)}: {w_own:.2f} + {name(partner)}: {w_partner:.2f}'


def _short(name: str, limit: int = 12) -> str:
    return name if len(name) <= limit else name[:limit - 1] + '~'


def plot_mix_grid(view: MixView,
                  path: str,
                  data_preprocessor: Optional[nn.Module] = None,
                  class_names: Optional[List[str]] = None,
                  max_rows: int = 8,
                  bgr: bool = False,
                  title: Optional[str] = None) -> None:
    """Draw a :class:`MixView` as a PNG grid, one row per sample.

    Columns: own image, partner, saliency (overlaid on the image it belongs
    to, when the method has one), mask (own-image weight, black = partner;
    estimated masks are marked), mixed image (its soft label in the title).

    Args:
        view (MixView): From :func:`describe_mix`.
        path (str): Output PNG path.
        data_preprocessor (nn.Module, optional): For :func:`denormalize`.
            Defaults to None.
        class_names (list[str], optional): Class names. Defaults to None.
        max_rows (int): Rows drawn (first samples). Defaults to 8.
        bgr (bool): See :func:`denormalize`. Defaults to False.
        title (str, optional): Figure title. Defaults to the augment name.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    rows = min(int(max_rows), view.inputs.shape[0])
    if rows < 1:
        raise ValueError(f'max_rows={max_rows} must be >= 1.')
    own = denormalize(view.inputs, data_preprocessor, bgr)
    mixed = denormalize(view.mixed, data_preprocessor, bgr)
    index = view.index.cpu()
    labels = view.labels.cpu()
    names = [_short(n) for n in class_names] if class_names else None

    def cname(c: int) -> str:
        return names[c] if names and c < len(names) else str(c)

    columns = ['own', 'partner']
    if view.saliency is not None:
        columns.append(f'saliency ({view.saliency_of})')
    if view.mask is not None:
        columns.append('mask (estimated,\nblue = undefined)' if view.
                       estimated else 'mask (white = own)')
    columns.append('mixed')
    H, W = own.shape[-2:]

    def as_img(x: torch.Tensor):
        arr = x.permute(1, 2, 0).numpy()
        if arr.shape[2] == 1:
            return arr[..., 0], dict(cmap='gray', vmin=0, vmax=1)
        return arr[..., :3], {}

    gray_cmap = matplotlib.colormaps['gray'].with_extremes(bad='#7fb3d5')
    fig, axes = plt.subplots(rows,
                             len(columns),
                             figsize=(1.9 * len(columns), 2.1 * rows + 0.5),
                             squeeze=False)
    for r in range(rows):
        j = int(index[r])
        cells = []
        img, kw = as_img(own[r])
        cells.append((img, kw, f'{cname(int(labels[r]))}'))
        img, kw = as_img(own[j])
        partner = f'#{j}: {cname(int(labels[j]))}'
        cells.append((img, kw, partner + (' (itself)' if j == r else '')))
        overlay = None
        if view.saliency is not None:
            sal = view.saliency[r].detach().float().cpu()[None, None]
            sal = F.interpolate(sal, size=(H, W), mode='nearest')[0, 0]
            lo, hi = float(sal.min()), float(sal.max())
            sal = (sal - lo) / (hi - lo) if hi > lo else torch.zeros_like(sal)
            base = own[j] if view.saliency_of == 'partner' else own[r]
            cells.append(
                (base.mean(0).numpy(), dict(cmap='gray', vmin=0, vmax=1), ''))
            overlay = len(cells) - 1, sal.numpy()
        if view.mask is not None:
            m = view.mask[r, 0].detach().float().cpu()
            # an estimated mask is undefined on some pixels: no area for it
            text = '' if view.estimated else \
                f'own area {float(m.mean()):.2f}'
            cells.append((np.ma.masked_invalid(m.numpy()),
                          dict(cmap=gray_cmap, vmin=0, vmax=1), text))
        img, kw = as_img(mixed[r])
        text = pair_weights_text(view.scores[r].cpu(), int(labels[r]),
                                 int(labels[j]), names)
        cells.append((img, kw, text))
        for c, (img, kw, text) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(img, interpolation='nearest', **kw)
            if overlay is not None and overlay[0] == c:
                ax.imshow(overlay[1],
                          cmap='jet',
                          alpha=0.5,
                          vmin=0,
                          vmax=1,
                          interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=8, fontweight='bold')
            ax.set_xlabel(text, fontsize=7)
        if view.lam is not None and bool(torch.isfinite(view.lam[r])):
            axes[r, 0].set_ylabel(f'λ = {float(view.lam[r]):.2f}', fontsize=7)
    title = title or view.name
    fig.suptitle(title, fontsize=9)
    height = fig.get_size_inches()[1]
    top = 1 - (0.18 * (title.count('\n') + 1) + 0.05) / height
    fig.tight_layout(rect=(0, 0, 1, top))
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)


def plot_mixed_batch(mixed: torch.Tensor,
                     scores: torch.Tensor,
                     path: str,
                     data_preprocessor: Optional[nn.Module] = None,
                     class_names: Optional[Sequence[str]] = None,
                     max_images: int = 16,
                     bgr: bool = False,
                     title: Optional[str] = None) -> None:
    """Draw a batch of mixed images, each with its soft label, as a PNG.

    The compact view of a training batch (:class:`~mergemix_mm.engine.
    MixSamplesHook`); :func:`plot_mix_grid` shows own image, partner and
    mask as well.

    Args:
        mixed (Tensor): ``[B, C, H, W]`` normalised images.
        scores (Tensor): ``[B, K]`` their soft labels.
        path (str): Output PNG path.
        data_preprocessor (nn.Module, optional): For :func:`denormalize`.
            Defaults to None.
        class_names (Sequence[str], optional): Class names. Defaults to
            None.
        max_images (int): Images drawn (the first ones), 8 per row.
            Defaults to 16.
        bgr (bool): See :func:`denormalize`. Defaults to False.
        title (str, optional): Figure title. Defaults to None.
    """
    # a Figure of its own, drawn by Agg: no pyplot, so the process's
    # backend and open figures (e.g. in a notebook) are left alone
    from matplotlib.figure import Figure

    n = min(int(max_images), mixed.shape[0])
    if n < 1:
        raise ValueError(f'max_images={max_images} must be >= 1.')
    images = denormalize(mixed[:n], data_preprocessor, bgr)
    names = [_short(c) for c in class_names] if class_names else None
    cols = min(n, 8)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(1.7 * cols, 1.9 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis('off')
            continue
        arr = images[k].permute(1, 2, 0).numpy()
        if arr.shape[2] == 1:
            ax.imshow(arr[..., 0], cmap='gray', vmin=0, vmax=1,
                      interpolation='nearest')
        else:
            ax.imshow(arr[..., :3], interpolation='nearest')
        ax.set_xlabel(label_weights_text(scores[k].detach().cpu(), names),
                      fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=100)
