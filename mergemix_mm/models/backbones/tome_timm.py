"""timm ViT wrapped as an mmpretrain backbone, with token merging."""
import os.path as osp
from typing import Optional, Sequence

from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from ...utils.checks import check_bool
from ..tome.functional import (ToMeOutput, ViTGeometry,
                               check_img_size_setting)
from ..tome.schedule import RType
from ..tome.timm_vit import (is_timm_vit, timm_vit_geometry, tome_timm_forward)
from .tome_vit import ToMeMixin

__all__ = ['ToMeTimmViT']


def _load_timm_checkpoint(model: nn.Module, path: str) -> None:
    """Load a timm ViT checkpoint as timm's pretrained loading does: the
    position embedding is resampled to the model's grid, and classifier
    weights the model has no place for (``num_classes=0``, or another
    number of classes) are left out; every other key must match.

    Args:
        model (nn.Module): timm ``VisionTransformer``.
        path (str): ``.pth`` / ``.safetensors`` file (a plain state dict or
            one under ``state_dict`` / ``model``; EMA weights preferred).
    """
    from timm.models import load_checkpoint
    from timm.models.vision_transformer import checkpoint_filter_fn
    classifier = model.pretrained_cfg.get('classifier') or 'head'
    if isinstance(classifier, str):
        classifier = (classifier, )
    own = model.state_dict()

    def keep(key: str, value: Tensor) -> bool:
        if not any(key.startswith(c + '.') for c in classifier):
            return True
        return key in own and own[key].shape == value.shape

    def filter_fn(state_dict: dict, model: nn.Module) -> dict:
        state_dict = checkpoint_filter_fn(state_dict, model)
        return {k: v for k, v in state_dict.items() if keep(k, v)}

    load_checkpoint(model, path, strict=True, filter_fn=filter_fn)


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
            a local cache), at construction and again in
            :meth:`init_weights`, so that a classifier's ``init_cfg`` does
            not overwrite them. Defaults to False.
        checkpoint_path (str): Local timm checkpoint, loaded as timm loads
            pretrained weights: the position embedding is resampled to
            ``img_size`` and classifier weights are dropped unless the model
            has a head of the same shape. Defaults to ''.
        merge_num, tome_r, merge_inflect, test_merge_num, test_tome_r,
        prop_attn, schedule_compat: As :class:`ToMeVisionTransformer`.
        with_cp (bool): Gradient checkpointing of the blocks (timm's
            ``set_grad_checkpointing``), merged forwards included: less
            memory, one more block forward per backward. Defaults to False.
        init_cfg (dict, optional): mmengine init config, applied over
            timm's own initialisation (timm's ``init_weights`` is not run
            again); not together with ``pretrained`` / ``checkpoint_path``.
            Defaults to None.
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
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None,
                 **timm_kwargs) -> None:
        super().__init__(init_cfg)
        check_bool(type(self).__name__, 'with_cp', with_cp)
        import timm
        if checkpoint_path and not osp.isfile(checkpoint_path):
            raise FileNotFoundError(
                f'checkpoint_path={checkpoint_path!r} does not exist')
        if init_cfg and (pretrained or checkpoint_path):
            raise ValueError(
                'init_cfg cannot be combined with pretrained=True or '
                'checkpoint_path: both set the weights of the timm model')
        timm_kwargs = dict(timm_kwargs)
        timm_kwargs.setdefault('num_classes', 0)
        self._timm_weights = (model_name, bool(pretrained), checkpoint_path,
                              dict(timm_kwargs))
        self.model = timm.create_model(
            model_name, pretrained=pretrained, **timm_kwargs)
        if not is_timm_vit(self.model):
            raise ValueError(
                f'model_name={model_name!r} builds a '
                f'{type(self.model).__name__}, not a timm VisionTransformer')
        if checkpoint_path:
            _load_timm_checkpoint(self.model, checkpoint_path)
        if with_cp:
            self.model.set_grad_checkpointing(True)
        # timm initialised the model when it built it. mmengine would call
        # the timm model's own ``init_weights`` again from ours, after
        # applying ``init_cfg``s, and so undo them; mark it as initialised.
        self.model.is_init = True
        geo = timm_vit_geometry(self.model)
        check_img_size_setting(self.model.patch_embed.img_size,
                               geo.patch_size)
        grid = self.model.patch_embed.grid_size
        self._init_tome(geo.num_layers,
                        grid[0] * grid[1] + geo.num_extra_tokens,
                        geo.num_extra_tokens, merge_num, tome_r, merge_inflect,
                        test_merge_num, test_tome_r, prop_attn,
                        schedule_compat)
        self._register_load_state_dict_pre_hook(self._add_model_prefix)

    def init_weights(self) -> None:
        """Initialise as mmengine does, except that with ``pretrained`` or
        ``checkpoint_path`` the timm weights are loaded again.

        mmengine applies an enclosing model's ``init_cfg`` (e.g. the DeiT
        bases' ``TruncNormal`` for every ``Linear``) to all sub-modules
        before it calls the children's ``init_weights``, so weights loaded
        at construction would be overwritten; loading them here, last,
        keeps them.
        """
        name, pretrained, checkpoint_path, kwargs = self._timm_weights
        if not (pretrained or checkpoint_path):
            super().init_weights()
            return
        if pretrained:
            import timm
            fresh = timm.create_model(name, pretrained=True, **kwargs)
            self.model.load_state_dict(fresh.state_dict())
        if checkpoint_path:
            _load_timm_checkpoint(self.model, checkpoint_path)
        self._is_init = True

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
