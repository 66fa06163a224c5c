"""Settings of MergeMix preference tuning for MLLMs.

:class:`MergeMixArguments` is a dataclass usable with
``transformers.HfArgumentParser`` (every field is a CLI flag of
``tools/mllm/train.py``). Defaults follow the paper-intended method
(``ALGORITHM.md`` §10, B1-B10); ``compat='llava'`` switches every setting
whose official LLaVA code differs to the coded behaviour (except the
off-by-one log-prob slice, which is a bug and is never reproduced).
"""
import dataclasses
import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Dict, Optional

from ..utils.checks import check_bool
from .tome_clip import TOKEN_ORDERS

__all__ = ['MergeMixArguments', 'METHODS', 'LLAVA_COMPAT']

#: Loss recipes of the trainer (paper Table 3 rows).
METHODS = ('sft', 'mergemix', 'mixup', 'cutmix', 'resizemix')

#: Settings changed by ``compat='llava'`` (the official LLaVA code).
LLAVA_COMPAT = dict(
    lam_schedule='once',
    loser_grad=False,
    length_norm='padded',
    topk_space='merged',
    partner='randperm',
    margin_lam='nominal',
    token_order='merged',
)

_CHOICES = dict(
    method=METHODS,
    lam_schedule=('step', 'once'),
    length_norm=('tokens', 'padded'),
    topk_space=('recovered', 'merged'),
    partner=('derangement', 'randperm'),
    margin_lam=('kept', 'nominal'),
    token_order=TOKEN_ORDERS,
    loss_combine=('mean', 'sum'),
    compat=(None, 'llava'),
)


@dataclass
class MergeMixArguments:
    """MergeMix settings (see ``docs/mllm.md``).

    Attributes:
        method (str): ``'sft'`` (SFT only), ``'mergemix'`` (SFT + mixed
            SimPO with MergeMix losers) or ``'mixup'`` / ``'cutmix'`` /
            ``'resizemix'`` (SFT + mixed SimPO with hand-crafted losers).
            Defaults to ``'mergemix'``.
        merge_num (int): Visual tokens merged by ToMe in the CLIP tower
            (LLaVA only; the LLM receives ``N - merge_num`` visual tokens,
            e.g. 576 - 288). ``0`` disables ToMe. Defaults to 0.
        attn_layer (int, optional): 0-based CLIP block whose CLS-row
            attention builds the mask (LLaVA only). Defaults to None: the
            feature layer.
        prop_attn (bool): Proportional attention in the ToMe tower.
            Defaults to False.
        token_order (str): Order of the merged visual tokens sent to the
            LLM (LLaVA with ``merge_num > 0``): ``'merged'``, the order
            merging leaves them in (official code); ``'raster'``, by the
            first patch each token holds (the order of un-merged tokens).
            Defaults to ``'merged'`` (see ``docs/mllm.md``: better on the
            digits demo).
        qwen_saliency_block (int, optional): Full-attention block of the
            Qwen2.5-VL tower used for the mask (Qwen2.5-VL only). Defaults
            to None: the last.
        beta (float): SimPO reward scale, > 0. Defaults to 1.0.
        loss_combine (str): ``'mean'``: ``0.5 * SFT + 0.5 * SimPO`` (official
            code); ``'sum'``: ``SFT + SimPO`` (paper Eq. 12).
            Defaults to ``'mean'``.
        loser_grad (bool): Back-propagate through the loser branch (SimPO
            definition). False: loser under ``no_grad`` (official code).
            Defaults to True.
        lam_schedule (str): ``'step'``: ``lam ~ U(0, 1)`` every step
            (paper, Alg. 1/2); ``'once'``: one draw per run (official code).
            Defaults to ``'step'``.
        length_norm (str): ``'tokens'``: ``|y|`` = response tokens per
            sample; ``'padded'``: the official code's slice length, the
            padded label length without the visual tokens (the official
            labels hold one ``<image>`` placeholder, the logits are cut
            after the visual tokens). Defaults to ``'tokens'``.
        topk_space (str): ``'recovered'``: recover the attention to the
            patch grid, then keep the top ``floor(lam * N)`` patches;
            ``'merged'``: top-k over merged tokens, then expand (official
            LLaVA order). Defaults to ``'recovered'``.
        partner (str): ``'derangement'`` (no self-pairs) or ``'randperm'``.
            Defaults to ``'derangement'``.
        margin_lam (str): ``'kept'``: margin uses the realised kept
            fraction; ``'nominal'``: the drawn ``lam`` (MergeMix and Mixup
            only: for CutMix / ResizeMix the official augmenter also
            returns the realised fraction, and ResizeMix's ``lam`` sizes
            the *pasted* box). Defaults to ``'kept'``.
        resizemix_min (float): Lower side ratio of ResizeMix boxes.
            Defaults to 0.1.
        resizemix_max (float): Upper side ratio. Defaults to 0.8.
        compat (str, optional): ``'llava'`` applies :data:`LLAVA_COMPAT`
            over the fields above (``margin_lam`` only for ``'mergemix'``),
            whatever they are set to. Defaults to None.
    """
    method: str = field(
        default='mergemix',
        metadata=dict(help='sft | mergemix | mixup | cutmix | resizemix'))
    merge_num: int = field(
        default=0,
        metadata=dict(help='visual tokens merged by ToMe in the CLIP tower '
                      '(e.g. 288 of 576); 0 disables ToMe'))
    attn_layer: Optional[int] = field(
        default=None,
        metadata=dict(help='0-based CLIP block for the mask attention '
                      '(default: the feature layer)'))
    prop_attn: bool = field(
        default=False, metadata=dict(help='proportional attention in ToMe'))
    token_order: str = field(
        default='merged',
        metadata=dict(help="merged visual tokens to the LLM in 'merged' "
                      "order (official) or in 'raster' order (first "
                      'patch)'))
    qwen_saliency_block: Optional[int] = field(
        default=None,
        metadata=dict(help='Qwen2.5-VL full-attention block for the mask '
                      '(default: the last one)'))
    beta: float = field(default=1.0, metadata=dict(help='SimPO beta (> 0)'))
    loss_combine: str = field(
        default='mean',
        metadata=dict(help="'mean': 0.5*SFT + 0.5*SimPO; 'sum': SFT + SimPO"))
    loser_grad: bool = field(
        default=True,
        metadata=dict(help='gradient through the loser (False: no_grad)'))
    lam_schedule: str = field(
        default='step',
        metadata=dict(help="'step': lam ~ U(0,1) per step; 'once': per run"))
    length_norm: str = field(
        default='tokens',
        metadata=dict(help="'tokens': |y| per sample; 'padded': padded "
                      'label length'))
    topk_space: str = field(
        default='recovered',
        metadata=dict(help="'recovered' (top-k over patches) or 'merged'"))
    partner: str = field(
        default='derangement',
        metadata=dict(help="'derangement' or 'randperm'"))
    margin_lam: str = field(
        default='kept',
        metadata=dict(help="'kept' (realised kept fraction) or 'nominal'"))
    resizemix_min: float = field(default=0.1)
    resizemix_max: float = field(default=0.8)
    compat: Optional[str] = field(
        default=None,
        metadata=dict(help="'llava': reproduce the official LLaVA choices"))

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check every setting.

        Raises:
            TypeError: If a setting has the wrong type (e.g. a string for a
                bool), naming it.
            ValueError: If a setting is out of range or not one of its
                choices, naming it.
        """
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f'{name}={value!r} is not valid; choose one '
                                 f'of {choices}')
        for name in ('prop_attn', 'loser_grad'):
            check_bool('MergeMixArguments', name, getattr(self, name))
        for name in ('attn_layer', 'qwen_saliency_block'):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int)):
                raise TypeError(f'{name}={value!r} must be an int or None')
        for name in ('beta', 'resizemix_min', 'resizemix_max'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real):
                raise TypeError(f'{name}={value!r} must be a number')
        if not self.beta > 0 or not math.isfinite(self.beta):
            raise ValueError(f'beta={self.beta!r} must be > 0 (the SimPO '
                             'reward scale)')
        if isinstance(self.merge_num, bool) or not isinstance(
                self.merge_num, int) or self.merge_num < 0:
            raise ValueError(
                f'merge_num={self.merge_num!r} must be an int >= 0')
        if self.margin_lam == 'nominal' and self.method in ('cutmix',
                                                            'resizemix'):
            raise ValueError(
                f"margin_lam='nominal' with method={self.method!r}: the "
                'drawn lam is not the clean image share of a box mix (for '
                "ResizeMix it sizes the pasted box); use margin_lam='kept', "
                'which is what the official augmenter returns too')
        if not 0. < self.resizemix_min <= self.resizemix_max <= 1.:
            raise ValueError(
                f'resizemix_min={self.resizemix_min}, resizemix_max='
                f'{self.resizemix_max} must satisfy 0 < min <= max <= 1')

    def resolved(self) -> 'MergeMixArguments':
        """A copy with ``compat`` applied (the object itself is unchanged)."""
        return dataclasses.replace(self, **self._compat_overrides())

    def _compat_overrides(self) -> Dict[str, Any]:
        if self.compat is None:
            return {}
        overrides = dict(LLAVA_COMPAT)
        if self.method != 'mergemix':
            # The official augmenter returns the realised kept fraction for
            # the box mixes (and Mixup's nominal lam is its realised one).
            overrides.pop('margin_lam')
        return overrides

    @property
    def uses_loser(self) -> bool:
        """Whether the recipe builds a loser image (all but ``'sft'``)."""
        return self.method != 'sft'
