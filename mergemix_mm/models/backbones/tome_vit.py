"""mmpretrain ViT with token merging (ToMe)."""
import contextlib
import math
from numbers import Real
from typing import Iterator, List, Optional, Sequence

import numpy as np
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from ...utils.checks import check_bool
from ..tome.functional import (ToMeOutput, ViTGeometry,
                               check_img_size_setting)
from ..tome.mmpretrain_vit import mmpretrain_vit_geometry, tome_vit_forward
from ..tome.schedule import RType, check_schedule, resolve_schedule

__all__ = ['ToMeMixin', 'ToMeVisionTransformer']


class ToMeMixin:
    """Merge-schedule handling shared by the ToMe backbones.

    The schedule is set at construction (and can be replaced with
    :meth:`set_merge_schedule`, e.g. by ``ToMeScheduleHook``); which one a
    forward uses depends only on ``self.training`` and the :meth:`merging`
    switch.
    """

    def _init_tome(self, num_layers: int, num_tokens: int, num_protected: int,
                   merge_num: int, tome_r: Optional[RType],
                   merge_inflect: float, test_merge_num: Optional[int],
                   test_tome_r: Optional[RType], prop_attn: bool,
                   schedule_compat: Optional[str]) -> None:
        check_bool(type(self).__name__, 'prop_attn', prop_attn)
        self._tome_geometry_args = dict(
            num_layers=num_layers, num_tokens=num_tokens,
            num_protected=num_protected, merge_inflect=merge_inflect,
            schedule_compat=schedule_compat)
        self.set_merge_schedule(merge_num, tome_r, test_merge_num,
                                test_tome_r)
        self.prop_attn = prop_attn
        self._merging_enabled = True
        # for errors on inputs of another size than the schedules were
        # checked for
        self._schedule_tokens = num_tokens

    def _schedule_for(self, merge_num: int, tome_r: Optional[RType],
                      test_merge_num: Optional[int],
                      test_tome_r: Optional[RType]) -> tuple:
        """``(train r list, test r list, (train name, test name))`` for
        this backbone's geometry, each checked against its token count;
        errors name the setting."""
        geo = self._tome_geometry_args
        num_layers, num_tokens = geo['num_layers'], geo['num_tokens']
        num_protected, merge_inflect = geo['num_protected'], geo[
            'merge_inflect']
        schedule_compat = geo['schedule_compat']
        owner = type(self).__name__
        if (isinstance(merge_inflect, bool)
                or not isinstance(merge_inflect, Real)
                or not math.isfinite(merge_inflect)):
            raise TypeError(f'{owner}: merge_inflect={merge_inflect!r} must '
                            'be a finite number.')
        train = resolve_schedule(num_layers, merge_num, tome_r, merge_inflect,
                                 schedule_compat)
        name = (f'tome_r={tome_r!r}'
                if tome_r is not None else f'merge_num={merge_num}')
        check_schedule(train, num_tokens, num_protected, setting=name)
        train_name = name
        if test_merge_num is None and test_tome_r is None:
            test = list(train)
        else:
            if test_tome_r is not None and test_merge_num is not None:
                raise ValueError(
                    f'test_merge_num={test_merge_num} and test_tome_r='
                    f'{test_tome_r!r} are mutually exclusive')
            name = (f'test_tome_r={test_tome_r!r}' if test_tome_r is not None
                    else f'test_merge_num={test_merge_num!r}')
            try:
                test = resolve_schedule(num_layers, test_merge_num,
                                        test_tome_r, merge_inflect,
                                        schedule_compat)
            except ValueError as err:  # the message names merge_num/tome_r
                raise ValueError(f'{name}: {err}') from err
            check_schedule(test, num_tokens, num_protected, setting=name)
        self._check_merged_outputs(train, test)
        return train, test, (train_name, name)

    def _check_merged_outputs(self, train: List[int],
                              test: List[int]) -> None:
        """Raise ValueError if the backbone's outputs cannot be produced
        from merged tokens under these schedules (none by default)."""

    @property
    def schedule_options(self) -> dict:
        """How this backbone spreads a ``merge_num`` over its blocks:
        ``inflect`` (``merge_inflect``) and ``compat``
        (``schedule_compat``), as keyword arguments of
        :func:`~mergemix_mm.models.tome.schedule_from_merge_num` and
        :func:`~mergemix_mm.models.tome.schedule_from_setting`."""
        geo = self._tome_geometry_args
        return dict(inflect=geo['merge_inflect'],
                    compat=geo['schedule_compat'])

    def check_merge_schedule(self,
                             merge_num: int = 0,
                             tome_r: Optional[RType] = None,
                             test_merge_num: Optional[int] = None,
                             test_tome_r: Optional[RType] = None) -> tuple:
        """Resolve and check a merge schedule for this backbone without
        applying it (same settings and errors as the constructor).

        Returns:
            tuple: ``(train r list, test r list)``.

        Raises:
            ValueError: Naming the setting whose schedule does not fit.
        """
        train, test, _ = self._schedule_for(merge_num, tome_r,
                                            test_merge_num, test_tome_r)
        return train, test

    def set_merge_schedule(self,
                           merge_num: int = 0,
                           tome_r: Optional[RType] = None,
                           test_merge_num: Optional[int] = None,
                           test_tome_r: Optional[RType] = None) -> None:
        """Replace the train and test merge schedules, as the constructor
        builds them from these settings (the test schedule is the train one
        unless ``test_merge_num`` / ``test_tome_r`` is given);
        ``merge_inflect``, ``schedule_compat`` and ``prop_attn`` stay as
        constructed, and so does a :meth:`merging` switch in force.

        Raises:
            ValueError: Naming the setting whose schedule does not fit (the
                schedules are then unchanged).
        """
        train, test, names = self._schedule_for(merge_num, tome_r,
                                                test_merge_num, test_tome_r)
        self.train_r_list: List[int] = train
        self.test_r_list: List[int] = test
        self._schedule_names = names

    def _check_input_tokens(self, x: Tensor) -> None:
        """Raise a ValueError naming the schedule's setting when images of
        another size than the configured one give too few tokens for the
        current schedule (larger images merge the same ``r`` per block)."""
        if not any(self.current_r_list):
            return
        geometry = self.tome_geometry()
        (ph, pw), extra = geometry.patch_size, geometry.num_extra_tokens
        if x.dim() != 4 or x.shape[-2] % ph or x.shape[-1] % pw:
            return  # the forward reports a bad image shape
        h, w = x.shape[-2:]
        num_tokens = (h // ph) * (w // pw) + extra
        if num_tokens == self._schedule_tokens:
            return
        name = self._schedule_names[0 if self.training else 1]
        check_schedule(
            self.current_r_list,
            num_tokens,
            extra,
            setting=f'{name} (a schedule for {self._schedule_tokens} tokens; '
            f'{h}x{w} images give {num_tokens})')

    @property
    def current_r_list(self) -> List[int]:
        """``r`` per block used by the next forward (zeros when merging is
        switched off)."""
        if not self._merging_enabled:
            return [0] * len(self.train_r_list)
        return list(self.train_r_list if self.training else self.test_r_list)

    def train(self, mode: bool = True):
        """Set train / eval mode (which picks the train or test schedule) and
        return ``self``, as ``torch.nn.Module.train`` does (mmpretrain's
        ``BaseBackbone.train`` returns None, which breaks
        ``model = ToMeVisionTransformer(...).eval()``)."""
        super().train(mode)
        return self

    @contextlib.contextmanager
    def merging(self, enabled: bool) -> Iterator[None]:
        """Context manager that switches merging on or off for the forwards
        run inside it (e.g. ``tome_in_mix``)::

            with backbone.merging(False):
                feats = backbone(x)  # identical to the stock ViT
        """
        previous = self._merging_enabled
        self._merging_enabled = bool(enabled)
        try:
            yield
        finally:
            self._merging_enabled = previous


def _python_drop_probs(module: nn.Module) -> nn.Module:
    """Store every numpy ``drop_prob`` under ``module`` as a Python float.

    mmpretrain's ViT spreads its drop-path rates with ``np.linspace``, and
    mmcv's ``drop_path`` tests ``drop_prob == 0.``; torch.compile treats the
    numpy scalar as a tensor, so that test is a data-dependent branch that
    splits the graph in every block. The same value as a Python float keeps
    the forward one graph; nothing else changes.

    Args:
        module (nn.Module): Model whose sub-modules are updated in place.

    Returns:
        nn.Module: ``module``.
    """
    for sub in module.modules():
        prob = getattr(sub, 'drop_prob', None)
        if isinstance(prob, np.floating):
            sub.drop_prob = float(prob)
    return module


@MODELS.register_module()
class ToMeVisionTransformer(ToMeMixin, VisionTransformer):
    """Vision Transformer with token merging (ToMe).

    Same modules and state-dict keys as mmpretrain's ``VisionTransformer``
    (DeiT / ViT checkpoints load unchanged). Blocks merge ``r`` tokens after
    the attention residual and before the MLP, with size-weighted averages
    (``ALGORITHM.md`` §3). With merging off the stock forward is used.
    The forward traces into one ``torch.compile`` graph, with or without
    merging, in training and in eval mode.

    Args:
        *args: Positional arguments of ``VisionTransformer`` (``arch``...).
        merge_num (int): Total tokens merged over all blocks, spread on
            MergeMix's decreasing schedule. Defaults to 0.
        tome_r (int | tuple | list, optional): ToMe's ``r`` instead of
            ``merge_num`` (int per block, ``(r, inflect)`` or a list).
            Mutually exclusive with ``merge_num``. Defaults to None.
        merge_inflect (float): Inflection for ``merge_num``. Defaults to
            -0.5.
        test_merge_num (int, optional): Schedule in eval mode; None reuses
            the training schedule, 0 disables merging at test. Defaults to
            None.
        test_tome_r (int | tuple | list, optional): ``tome_r`` for eval mode.
            Mutually exclusive with ``test_merge_num`` (0 included).
            Defaults to None.
        prop_attn (bool): Proportional attention (ToMe). Defaults to False,
            as in MergeMix.
        schedule_compat (str, optional): ``'openmixup'`` to keep OpenMixup's
            schedule when negative entries occur. Defaults to None.
        **kwargs: Keyword arguments of ``VisionTransformer``.
    """

    def __init__(self,
                 *args,
                 merge_num: int = 0,
                 tome_r: Optional[RType] = None,
                 merge_inflect: float = -0.5,
                 test_merge_num: Optional[int] = None,
                 test_tome_r: Optional[RType] = None,
                 prop_attn: bool = False,
                 schedule_compat: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        geo = mmpretrain_vit_geometry(self)  # validates the layers
        check_img_size_setting(self.img_size, geo.patch_size)
        _python_drop_probs(self)
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self._init_tome(
            len(self.layers), num_patches + self.num_extra_tokens,
            self.num_extra_tokens, merge_num, tome_r, merge_inflect,
            test_merge_num, test_tome_r, prop_attn, schedule_compat)

    def _check_merged_outputs(self, train: List[int],
                              test: List[int]) -> None:
        """``out_type='featmap'`` needs the full patch grid: refused with a
        schedule that merges, by the constructor, :meth:`set_merge_schedule`
        and :meth:`check_merge_schedule` alike."""
        if self.out_type == 'featmap' and (any(train) or any(test)):
            raise ValueError("out_type='featmap' cannot be combined with "
                             'token merging; use cls_token, avg_featmap or '
                             'raw')

    def forward(self, x: Tensor) -> tuple:
        r_list = self.current_r_list
        if not any(r_list):
            return super().forward(x)
        self._check_input_tokens(x)
        return tome_vit_forward(
            self, x, r_list, prop_attn=self.prop_attn, trace_source=False).outs

    def tome_forward(self,
                     x: Tensor,
                     r_list: Optional[Sequence[int]] = None,
                     attn_layer: Optional[int] = None,
                     prop_attn: Optional[bool] = None,
                     trace_source: bool = True,
                     stop_at_attn_layer: bool = False) -> ToMeOutput:
        """Functional ToMe forward with attention / source capture.

        Args:
            x (Tensor): Images ``[B, C, H, W]``.
            r_list (Sequence[int], optional): Overrides the current schedule.
            attn_layer (int, optional): Block whose attention is returned.
            prop_attn (bool, optional): Overrides ``self.prop_attn``.
            trace_source (bool): Track the final source map. Defaults to
                True.
            stop_at_attn_layer (bool): Stop after block ``attn_layer``
                (``outs`` empty). Defaults to False.

        Returns:
            ToMeOutput: See :func:`tome_vit_forward`.
        """
        if r_list is None:
            self._check_input_tokens(x)
        return tome_vit_forward(
            self,
            x,
            self.current_r_list if r_list is None else r_list,
            prop_attn=self.prop_attn if prop_attn is None else prop_attn,
            attn_layer=attn_layer,
            trace_source=trace_source,
            stop_at_attn_layer=stop_at_attn_layer)

    def tome_geometry(self) -> ViTGeometry:
        """``(patch_size, num_extra_tokens, num_layers)``."""
        return mmpretrain_vit_geometry(self)
