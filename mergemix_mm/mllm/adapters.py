"""Model adapters: what MergeMix needs from LLaVA-1.5 and Qwen2.5-VL.

An adapter hides the differences between the two families behind four
operations used by :class:`~mergemix_mm.mllm.model.MergeMixVLM`:

* ``encode``: the clean images' visual features (LLaVA, through the ToMe
  CLIP tower) and saliency for the mask;
* ``build_losers``: pair images of the same size, mix them and return the
  loser pixel inputs in the model's own format;
* ``hidden``: final LLM hidden states for rows of ``input_ids`` whose image
  placeholders are filled with the given images;
* ``lm_head``: the language-model head.

LLaVA's visual features are computed here (the stock tower is run block by
block with ToMe), so the LLM receives exactly ``N - merge_num`` visual tokens
per image and the count is checked against the ``<image>`` tokens of every
row. Qwen2.5-VL keeps its own tower (see :mod:`.tome_qwen` for why ToMe is
not used there); its attention is used only for the mask.
"""
import inspect
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn

from .config import MergeMixArguments
from .mask import grouped_partner
from .pairs import Saliency, build_losers
from .tome_clip import (clip_feature_depth, clip_geometry,
                        clip_merge_schedule, clip_tome_forward)
from .tome_qwen import (check_qwen_merge_num, check_qwen_saliency_block,
                        qwen_patchify, qwen_unpatchify, qwen_vision_geometry,
                        qwen_vision_saliency)

__all__ = ['LoserInputs', 'LlavaAdapter', 'Qwen25VLAdapter', 'build_adapter']


class LoserInputs(NamedTuple):
    """Loser images of the valid pairs, in the model's input format.

    Attributes:
        image_index (Tensor): ``LongTensor[P]`` index (among the batch's
            images) of the winner image of each pair.
        pixel_values (Tensor): Loser pixels (LLaVA ``[P, C, S, S]``; Qwen
            processor rows).
        image_grid_thw (Tensor | None): ``[P, 3]`` (Qwen only).
        lam_kept (Tensor): ``[P]`` realised kept fraction.
    """
    image_index: Tensor
    pixel_values: Tensor
    image_grid_thw: Optional[Tensor]
    lam_kept: Tensor


def _unwrap(vlm: nn.Module) -> nn.Module:
    base = getattr(vlm, 'model', None)
    if base is None:
        raise TypeError(f'{type(vlm).__name__} has no .model; expected a '
                        'transformers *ForConditionalGeneration model')
    return base


def _no_pairs(device) -> LoserInputs:
    empty = torch.empty(0, dtype=torch.long, device=device)
    return LoserInputs(empty, None, None, torch.empty(0, device=device))


class LlavaAdapter:
    """Adapter for ``LlavaForConditionalGeneration`` with a CLIP tower.

    Args:
        vlm (nn.Module): The LLaVA model.
        args (MergeMixArguments): Resolved MergeMix settings.
    """
    kind = 'llava'

    def __init__(self, vlm: nn.Module, args: MergeMixArguments):
        base = _unwrap(vlm)
        self.vlm = vlm
        self.args = args
        self.tower = base.vision_tower
        self.projector = base.multi_modal_projector
        self.language_model = base.language_model
        cfg = vlm.config
        self.feature_layer = cfg.vision_feature_layer
        self.strategy = cfg.vision_feature_select_strategy
        if self.strategy not in ('default', 'full'):
            raise ValueError(f'vision_feature_select_strategy='
                             f'{self.strategy!r} is not supported')
        token_id = getattr(cfg, 'image_token_id', None)
        if token_id is None:
            token_id = getattr(cfg, 'image_token_index', None)
        if token_id is None:
            raise ValueError('the LLaVA config has no image_token_id')
        self.image_token_id = int(token_id)
        self.image_size, self.patch_size, num_layers = clip_geometry(
            self.tower)
        self.grid = (self.image_size // self.patch_size, ) * 2
        self.num_patches = self.grid[0] * self.grid[1]
        self.depth = clip_feature_depth(num_layers, self.feature_layer)
        self.check_merge_num(args.merge_num)
        if args.qwen_saliency_block is not None:
            raise ValueError(
                f'qwen_saliency_block={args.qwen_saliency_block} applies to '
                "Qwen2.5-VL only; LLaVA's mask attention is set by "
                'attn_layer')
        if args.attn_layer is not None and not (
                0 <= args.attn_layer < self.depth):
            raise ValueError(
                f'attn_layer={args.attn_layer} is out of range: CLIP blocks '
                f'0..{self.depth - 1} run up to vision_feature_layer='
                f'{self.feature_layer}')

    def check_merge_num(self, merge_num: int) -> None:
        """Raise ValueError if ``merge_num`` cannot be merged."""
        clip_merge_schedule(self.num_patches, self.depth, merge_num)

    def num_visual_tokens(self, merge_num: int) -> int:
        """Visual tokens per image that the LLM receives."""
        self.check_merge_num(merge_num)
        extra = 1 if self.strategy == 'full' else 0
        return self.num_patches - merge_num + extra

    @property
    def lm_head(self) -> nn.Module:
        return self.vlm.get_output_embeddings()

    def encode(self, pixel_values: Tensor, image_grid_thw: Optional[Tensor],
               merge_num: int, want_saliency: bool
               ) -> Tuple[Tensor, Optional[Saliency]]:
        """Projected visual features ``[n, n_vis, D]`` and the saliency."""
        out = clip_tome_forward(
            self.tower,
            pixel_values,
            merge_num=merge_num,
            feature_layer=self.feature_layer,
            attn_layer=self.args.attn_layer,
            prop_attn=self.args.prop_attn,
            need_attn=want_saliency,
            token_order=self.args.token_order)
        feats = out.hidden_states
        if self.strategy == 'default':
            feats = feats[:, 1:]
        feats = self.projector(feats)
        saliency = None
        if want_saliency:
            saliency = Saliency(out.patch_scores, out.grid, self.patch_size,
                                out.cls_attn, out.attn_source)
        return feats, saliency

    def build_losers(self, pixel_values: Tensor,
                     image_grid_thw: Optional[Tensor],
                     saliency: Optional[Saliency], lam: float,
                     generator: Optional[torch.Generator] = None
                     ) -> LoserInputs:
        """Pair the images (all have the tower's size) and mix them."""
        n = pixel_values.shape[0]
        partner, valid = grouped_partner(
            [0] * n, allow_self=self.args.partner == 'randperm',
            device=pixel_values.device, generator=generator)
        if not valid.any():
            return _no_pairs(pixel_values.device)
        losers = build_losers(
            pixel_values,
            partner,
            lam,
            method=self.args.method,
            saliency=saliency,
            topk_space=self.args.topk_space,
            resizemix_scope=(self.args.resizemix_min,
                             self.args.resizemix_max),
            generator=generator)
        return LoserInputs(
            torch.arange(n, device=pixel_values.device), losers.images, None,
            losers.lam_kept)

    def hidden(self,
               input_ids: Tensor,
               attention_mask: Optional[Tensor],
               image_features: Optional[Tensor] = None,
               pixel_values: Optional[Tensor] = None,
               image_grid_thw: Optional[Tensor] = None,
               mm_token_type_ids: Optional[Tensor] = None,
               position_ids: Optional[Tensor] = None) -> Tensor:
        """LLM hidden states ``[R, L, D]`` with the image tokens filled."""
        embeds = self.embed(input_ids, image_features)
        out = self.language_model(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False)
        return out.last_hidden_state

    def embed(self, input_ids: Tensor,
              image_features: Optional[Tensor]) -> Tensor:
        """Token embeddings with the visual features scattered in.

        Raises:
            ValueError: If a row's number of ``<image>`` tokens differs from
                the number of visual tokens the tower produces.
        """
        is_img = input_ids == self.image_token_id
        embeds = self.vlm.get_input_embeddings()(
            input_ids.masked_fill(is_img, 0))
        per_row = is_img.sum(1)
        n_feat = 0 if image_features is None else image_features.shape[1]
        n_img = 0 if image_features is None else image_features.shape[0]
        rows_with = int((per_row > 0).sum())
        bad = (per_row > 0) & (per_row != n_feat)
        if bad.any() or rows_with != n_img:
            # the merge count that gave these features (set_merge_num may
            # have changed it since the adapter was built)
            merged = (f' (merge_num={self.num_visual_tokens(0) - n_feat})'
                      if n_img else '')
            raise ValueError(
                'visual-token budget mismatch: rows have '
                f'{per_row.tolist()} <image> tokens but the vision tower '
                f'gives {n_feat} tokens for each of {n_img} images{merged}; '
                'build the collator with '
                'num_image_tokens=model.num_visual_tokens()')
        if n_img:
            embeds = embeds.masked_scatter(
                is_img.unsqueeze(-1),
                image_features.to(embeds.dtype).reshape(-1))
        return embeds


class Qwen25VLAdapter:
    """Adapter for ``Qwen2_5_VLForConditionalGeneration``.

    The stock vision tower runs inside the model's forward; the saliency for
    the mask comes from a separate no-grad pass that stops after the chosen
    full-attention block (:func:`.tome_qwen.qwen_vision_saliency`).

    The tower never merges tokens (``merge_num`` must be 0), so each of its
    tokens is one unit: the top-k over "merged" tokens expanded to units is
    the top-k over units itself, and ``topk_space='merged'`` (also set by
    ``compat='llava'``) selects exactly what ``'recovered'`` selects.

    Args:
        vlm (nn.Module): The Qwen2.5-VL model.
        args (MergeMixArguments): Resolved settings (``merge_num`` must be 0).
    """
    kind = 'qwen2_5_vl'

    def __init__(self, vlm: nn.Module, args: MergeMixArguments):
        check_qwen_merge_num(args.merge_num)
        # settings of the LLaVA ToMe tower, which Qwen2.5-VL does not have
        if args.token_order != 'merged':
            raise ValueError(
                f'token_order={args.token_order!r} applies to LLaVA with '
                "merge_num > 0 only; Qwen2.5-VL's tower does not merge "
                "tokens (keep token_order='merged')")
        if args.prop_attn:
            raise ValueError(
                'prop_attn=True applies to the LLaVA ToMe tower only; '
                "Qwen2.5-VL's tower does not merge tokens")
        if args.attn_layer is not None:
            raise ValueError(
                f'attn_layer={args.attn_layer} applies to the LLaVA CLIP '
                "tower only; Qwen2.5-VL's mask attention is set by "
                'qwen_saliency_block')
        base = _unwrap(vlm)
        self.vlm = vlm
        self.args = args
        self.base = base
        self.visual = base.visual
        # The tower includes its patch merger, which is the projector into
        # the LLM (LLaVA's multi_modal_projector sits outside its tower).
        self.tower = base.visual
        self.projector = base.visual.merger
        (self.patch_size, self.temporal, self.merge,
         self.channels) = qwen_vision_geometry(self.visual)
        if args.method == 'mergemix':
            check_qwen_saliency_block(self.visual, args.qwen_saliency_block)
        self.image_token_id = int(vlm.config.image_token_id)
        self._accepts_tt = 'mm_token_type_ids' in inspect.signature(
            base.forward).parameters

    def check_merge_num(self, merge_num: int) -> None:
        check_qwen_merge_num(merge_num)

    @property
    def lm_head(self) -> nn.Module:
        return self.vlm.get_output_embeddings()

    def encode(self, pixel_values: Tensor, image_grid_thw: Tensor,
               merge_num: int, want_saliency: bool
               ) -> Tuple[None, Optional[List[Tensor]]]:
        """No features (the model encodes itself); per-image saliency."""
        check_qwen_merge_num(merge_num)
        if not want_saliency:
            return None, None
        return None, qwen_vision_saliency(
            self.visual, pixel_values, image_grid_thw,
            self.args.qwen_saliency_block)

    def build_losers(self, pixel_values: Tensor, image_grid_thw: Tensor,
                     saliency: Optional[List[Tensor]], lam: float,
                     generator: Optional[torch.Generator] = None
                     ) -> LoserInputs:
        """Pair images with the same grid, mix at the 28-px (unit) level."""
        sizes = image_grid_thw.prod(-1).tolist()
        rows = torch.split(pixel_values, sizes)
        grids = [tuple(g) for g in image_grid_thw.tolist()]
        device = pixel_values.device
        partner, valid = grouped_partner(
            grids, allow_self=self.args.partner == 'randperm',
            device=device, generator=generator)
        if not valid.any():
            return _no_pairs(device)
        out_index, out_rows, out_grid, out_lam = [], [], [], []
        for key in dict.fromkeys(grids):
            idx = [i for i, g in enumerate(grids) if g == key]
            if len(idx) < 2:
                continue
            local = {g: j for j, g in enumerate(idx)}
            part = torch.tensor([local[int(partner[i])] for i in idx],
                                device=device)
            images = torch.stack([
                qwen_unpatchify(rows[i], key, self.patch_size, self.temporal,
                                self.merge, self.channels) for i in idx
            ])
            sal = None
            if saliency is not None:
                unit = self.patch_size * self.merge
                grid = (key[1] // self.merge, key[2] // self.merge)
                sal = Saliency(torch.stack([saliency[i] for i in idx]), grid,
                               unit)
            losers = build_losers(
                images,
                part,
                lam,
                method=self.args.method,
                saliency=sal,
                topk_space='recovered',  # = 'merged' without merging
                resizemix_scope=(self.args.resizemix_min,
                                 self.args.resizemix_max),
                generator=generator)
            for j, i in enumerate(idx):
                out_index.append(i)
                out_rows.append(
                    qwen_patchify(losers.images[j], self.patch_size,
                                  self.temporal, self.merge))
                out_grid.append(image_grid_thw[i])
                out_lam.append(losers.lam_kept[j])
        order = sorted(range(len(out_index)), key=out_index.__getitem__)
        return LoserInputs(
            torch.tensor([out_index[o] for o in order], device=device),
            torch.cat([out_rows[o] for o in order]),
            torch.stack([out_grid[o] for o in order]),
            torch.stack([out_lam[o] for o in order]))

    def hidden(self,
               input_ids: Tensor,
               attention_mask: Optional[Tensor],
               image_features: Optional[Tensor] = None,
               pixel_values: Optional[Tensor] = None,
               image_grid_thw: Optional[Tensor] = None,
               mm_token_type_ids: Optional[Tensor] = None,
               position_ids: Optional[Tensor] = None) -> Tensor:
        """LLM hidden states from the model's own multimodal forward."""
        kwargs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            use_cache=False)
        if self._accepts_tt:
            if mm_token_type_ids is None:
                mm_token_type_ids = (input_ids == self.image_token_id).int()
            kwargs['mm_token_type_ids'] = mm_token_type_ids
        if position_ids is not None:
            kwargs['position_ids'] = position_ids
        return self.base(**kwargs).last_hidden_state


def build_adapter(vlm: nn.Module, args: MergeMixArguments):
    """Pick the adapter for ``vlm`` from its config's ``model_type``.

    Raises:
        TypeError: For unsupported model families.
    """
    model_type = getattr(vlm.config, 'model_type', None)
    if model_type == 'llava':
        return LlavaAdapter(vlm, args)
    if model_type == 'qwen2_5_vl':
        return Qwen25VLAdapter(vlm, args)
    raise TypeError(f'model_type={model_type!r} is not supported by the '
                    "MergeMix MLLM trainer; use 'llava' (LLaVA-1.5) or "
                    "'qwen2_5_vl' (Qwen2.5-VL)")
