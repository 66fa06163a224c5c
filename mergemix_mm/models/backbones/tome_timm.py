"""timm ViT wrapped as an mmpretrain backbone, with token merging."""
from typing import Optional, Sequence

from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.registry import MODELS
from torch import Tensor

from ..tome.functional import ToMeOutput, ViTGeometry
from ..tome.schedule import RType
from ..tome.timm_vit import (is_timm_vit, timm_vit_geometry, tome_timm_forward)
from .tome_vit import ToMeMixin

__all__ = ['ToMeTimmViT']


@MODELS.register_module()
class ToMeTimmViT(ToMeMixin, BaseBackbone):
    """A timm ``VisionTransformer`` with token merging, as an mmpretrain
    backbone.

    The timm model is stored as ``self.model`` (state-dict keys
    ``model.*``); plain timm checkpoints without the prefix also load. The
    forward returns a 1-tuple with the pooled pre-logits feature, so
    mmpretrain's ``VisionTransformerClsHead`` / ``LinearClsHead`` can
    follow. Every timm ``global_pool`` works while merging: a merged token
    counts as the originals it holds (``'avg'`` is size-weighted, the
    attention pools ``'map'`` / ``'prr'`` add ``log(size)`` to their
    logits). MergeMix and the other CLS-attention methods need a model
    with a class token. Merging happens through the functional
    forward over timm's own blocks (no class swapping).

    Args:
        model_name (str): timm model name, e.g. ``'deit_small_patch16_224'``.
        pretrained (bool): Load timm's pretrained weights (needs the hub or
            a local cache). Defaults to False.
        checkpoint_path (str): Local timm checkpoint. Defaults to ''.
        merge_num, tome_r, merge_inflect, test_merge_num, test_tome_r,
        prop_attn, schedule_compat: As :class:`ToMeVisionTransformer`.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
        **timm_kwargs: Passed to ``timm.create_model`` (``img_size``,
            ``drop_path_rate``, ``global_pool``...). ``num_classes``
            defaults to 0 (no timm head).
    """

    def __init__(self,
                 model_name: str = 'deit_small_patch16_224',
                 pretrained: bool = False,
                 checkpoint_path: str = '',
                 merge_num: int = 0,
                 tome_r: Optional[RType] = None,
                 merge_inflect: float = -0.5,
                 test_merge_num: Optional[int] = None,
                 test_tome_r: Optional[RType] = None,
                 prop_attn: bool = False,
                 schedule_compat: Optional[str] = None,
                 init_cfg: Optional[dict] = None,
                 **timm_kwargs) -> None:
        super().__init__(init_cfg)
        import timm
        timm_kwargs = dict(timm_kwargs)
        timm_kwargs.setdefault('num_classes', 0)
        self.model = timm.create_model(
            model_name,
            pretrained=pretrained,
            checkpoint_path=checkpoint_path,
            **timm_kwargs)
        if not is_timm_vit(self.model):
            raise ValueError(
                f'model_name={model_name!r} builds a '
                f'{type(self.model).__name__}, not a timm VisionTransformer')
        geo = timm_vit_geometry(self.model)
        grid = self.model.patch_embed.grid_size
        self._init_tome(geo.num_layers,
                        grid[0] * grid[1] + geo.num_extra_tokens,
                        geo.num_extra_tokens, merge_num, tome_r, merge_inflect,
                        test_merge_num, test_tome_r, prop_attn,
                        schedule_compat)
        if pretrained or checkpoint_path:
            self._is_init = True  # keep timm's weights on init_weights()
        self._register_load_state_dict_pre_hook(self._add_model_prefix)

    @staticmethod
    def _add_model_prefix(state_dict, prefix, *args, **kwargs) -> None:
        """Accept timm checkpoints whose keys lack the ``model.`` prefix."""
        keys = [k for k in state_dict if k.startswith(prefix)]
        if not keys or any(k.startswith(prefix + 'model.') for k in keys):
            return
        for k in keys:
            state_dict[prefix + 'model.' + k[len(prefix):]] = state_dict.pop(k)

    def forward(self, x: Tensor) -> tuple:
        r_list = self.current_r_list
        if not any(r_list):
            feats = self.model.forward_features(x)
            return (self.model.forward_head(feats, pre_logits=True), )
        self._check_input_tokens(x)
        return tome_timm_forward(
            self.model,
            x,
            r_list,
            prop_attn=self.prop_attn,
            trace_source=False).outs

    def tome_forward(self,
                     x: Tensor,
                     r_list: Optional[Sequence[int]] = None,
                     attn_layer: Optional[int] = None,
                     prop_attn: Optional[bool] = None,
                     trace_source: bool = True,
                     stop_at_attn_layer: bool = False) -> ToMeOutput:
        """Functional ToMe forward with attention / source capture (see
        :func:`tome_timm_forward`)."""
        if r_list is None:
            self._check_input_tokens(x)
        return tome_timm_forward(
            self.model,
            x,
            self.current_r_list if r_list is None else r_list,
            prop_attn=self.prop_attn if prop_attn is None else prop_attn,
            attn_layer=attn_layer,
            trace_source=trace_source,
            stop_at_attn_layer=stop_at_attn_layer)

    def tome_geometry(self) -> ViTGeometry:
        """``(patch_size, num_extra_tokens, num_layers)``."""
        return timm_vit_geometry(self.model)
