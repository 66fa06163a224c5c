"""MergeMix preference tuning wrapper around a Hugging Face MLLM.

:class:`MergeMixVLM` is the module the trainer optimises. Its ``forward``
runs one training step's worth of computation (``ALGORITHM.md`` §6, B1-B9;
paper Alg. 2):

1. winner: the clean images through the vision tower (LLaVA: ToMe CLIP up to
   the feature layer, returning the CLS-row attention and source map of the
   same pass; Qwen2.5-VL: a no-grad saliency pass);
2. loser: every image with an in-batch partner of the same size is mixed
   (MergeMix: top ``floor(lam * N)`` salient patches kept; or Mixup /
   CutMix / ResizeMix); text-only samples and images without a partner form
   no pair;
3. one LLM forward over the ``B`` winner rows and the ``P`` loser rows
   (same ``input_ids`` and ``labels``), or the loser under ``no_grad``
   (``loser_grad=False``);
4. ``loss = w * SFT + w * mixed SimPO`` (``w = 1/2``, or 1 for
   ``loss_combine='sum'``); ``method='sft'`` gives the SFT loss alone.

Log-probabilities use the standard next-token shift over the expanded
sequence (:mod:`.loss`). Wrapping the whole step in one ``forward`` keeps
DDP / DeepSpeed / accelerate semantics intact (one wrapped call per step).
"""
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from mmengine.logging import print_log
from torch import Tensor, nn
from transformers.utils import ModelOutput

from .adapters import build_adapter
from .config import MergeMixArguments
from .loss import mixed_simpo_loss, response_logps, sft_loss_from_logps

__all__ = ['MergeMixOutput', 'MergeMixVLM']


@dataclass
class MergeMixOutput(ModelOutput):
    """Output of :class:`MergeMixVLM`.

    Attributes:
        loss (Tensor): The training loss.
        sft_loss (Tensor): Token-mean NLL of the responses given the clean
            images (equals the HF causal-LM loss).
        simpo_loss (Tensor | None): Mixed SimPO over the pairs (None for
            ``method='sft'``; 0 when the batch has no pair).
        logp_winner (Tensor): ``[B]`` summed response log-probabilities.
        num_tokens (Tensor): ``[B]`` response lengths.
        logp_loser (Tensor | None): ``[P]`` the same for the losers.
        pair_rows (Tensor | None): ``[P]`` batch row of each pair.
        lam (Tensor | None): ``[P]`` margin ratio used (``gamma = 1 - lam``).
        lam_kept (Tensor | None): ``[P]`` realised kept fraction.
    """
    loss: Optional[Tensor] = None
    sft_loss: Optional[Tensor] = None
    simpo_loss: Optional[Tensor] = None
    logp_winner: Optional[Tensor] = None
    num_tokens: Optional[Tensor] = None
    logp_loser: Optional[Tensor] = None
    pair_rows: Optional[Tensor] = None
    lam: Optional[Tensor] = None
    lam_kept: Optional[Tensor] = None


class MergeMixVLM(nn.Module):
    """A LLaVA-1.5 or Qwen2.5-VL model trained with SFT + mixed SimPO.

    Args:
        vlm (nn.Module): ``LlavaForConditionalGeneration`` (CLIP tower) or
            ``Qwen2_5_VLForConditionalGeneration``.
        args (MergeMixArguments, optional): Settings. Defaults to
            ``MergeMixArguments()`` (MergeMix, paper defaults).
    """
    #: The loss is computed here, never from ``num_items_in_batch``.
    accepts_loss_kwargs = False

    def __init__(self, vlm: nn.Module,
                 args: Optional[MergeMixArguments] = None):
        super().__init__()
        args = MergeMixArguments() if args is None else args
        args.validate()
        self.vlm = vlm
        self.mm_args = args.resolved()
        self.adapter = build_adapter(vlm, self.mm_args)
        self.merge_num = self.mm_args.merge_num
        self._warned = set()

    # ------------------------------------------------------------------ #
    # Hugging Face / Trainer plumbing
    # ------------------------------------------------------------------ #
    @property
    def config(self):
        return self.vlm.config

    @property
    def kind(self) -> str:
        """``'llava'`` or ``'qwen2_5_vl'``."""
        return self.adapter.kind

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        self.vlm.gradient_checkpointing_enable(**kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.vlm.gradient_checkpointing_disable()

    def enable_input_require_grads(self) -> None:
        self.vlm.enable_input_require_grads()

    def num_visual_tokens(self, merge_num: Optional[int] = None) -> int:
        """Visual tokens per image the LLM receives (LLaVA only)."""
        if self.kind != 'llava':
            raise ValueError('num_visual_tokens is defined by the image size '
                             'for Qwen2.5-VL (see the collator)')
        return self.adapter.num_visual_tokens(
            self.merge_num if merge_num is None else merge_num)

    def parameter_groups(self) -> Dict[str, List[nn.Parameter]]:
        """The model's parameters by part, each exactly once.

        Returns:
            dict: ``'vision_tower'`` (the vision encoder without the
            projector), ``'projector'`` (LLaVA's ``multi_modal_projector``,
            Qwen2.5-VL's patch merger) and ``'language_model'`` (everything
            else: the LLM, its embeddings and head), frozen parameters
            included.
        """
        projector = list(self.adapter.projector.parameters())
        seen = {id(p) for p in projector}
        tower = [
            p for p in self.adapter.tower.parameters() if id(p) not in seen
        ]
        seen.update(id(p) for p in tower)
        rest = [p for p in self.parameters() if id(p) not in seen]
        return dict(vision_tower=tower, projector=projector,
                    language_model=rest)

    def set_merge_num(self, merge_num: int) -> None:
        """Change the visual-token budget (e.g. 432 for inference)."""
        self.adapter.check_merge_num(merge_num)
        self.merge_num = merge_num

    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            print_log(msg, logger='current', level=logging.WARNING)

    # ------------------------------------------------------------------ #
    # forward
    # ------------------------------------------------------------------ #
    def _has_image(self, input_ids: Tensor,
                   has_image: Optional[Tensor]) -> Tensor:
        if has_image is None:
            return (input_ids == self.adapter.image_token_id).any(1)
        return has_image.to(device=input_ids.device, dtype=torch.bool)

    def _hidden(self, input_ids, attention_mask, pixel_values,
                image_grid_thw, mm_token_type_ids, want_saliency):
        """Encode + LLM for the winner rows; returns hidden and saliency."""
        feats, saliency = None, None
        if pixel_values is not None:
            feats, saliency = self.adapter.encode(
                pixel_values, image_grid_thw, self.merge_num, want_saliency)
        hidden = self.adapter.hidden(
            input_ids,
            attention_mask,
            image_features=feats,
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            mm_token_type_ids=mm_token_type_ids)
        return hidden, feats, saliency

    def forward(self,
                input_ids: Tensor,
                attention_mask: Optional[Tensor] = None,
                labels: Optional[Tensor] = None,
                pixel_values: Optional[Tensor] = None,
                image_grid_thw: Optional[Tensor] = None,
                mm_token_type_ids: Optional[Tensor] = None,
                has_image: Optional[Tensor] = None,
                lam: Optional[float] = None,
                generator: Optional[torch.Generator] = None,
                **kwargs) -> MergeMixOutput:
        """One MergeMix step (see the module docstring).

        Args:
            input_ids (Tensor): ``[B, L]`` with the image placeholders
                expanded to the visual-token count.
            attention_mask (Tensor, optional): ``[B, L]``.
            labels (Tensor): ``[B, L]`` aligned with ``input_ids``; ``-100``
                outside the responses.
            pixel_values (Tensor, optional): Images of the rows that have one,
                in row order (LLaVA ``[n, 3, S, S]``; Qwen processor rows).
            image_grid_thw (Tensor, optional): ``[n, 3]`` (Qwen).
            mm_token_type_ids (Tensor, optional): ``[B, L]`` (Qwen).
            has_image (Tensor, optional): ``BoolTensor[B]``; inferred from
                the image tokens if None.
            lam (float, optional): The step's mixing ratio in ``[0, 1]``;
                drawn from ``U(0, 1)`` if None (the trainer passes it).
            generator (torch.Generator, optional): RNG for partners/boxes.
            **kwargs: Ignored (e.g. ``sample_ids`` from the collator).

        Returns:
            MergeMixOutput: Loss and diagnostics.
        """
        if labels is None:
            raise ValueError('MergeMixVLM.forward needs labels')
        args = self.mm_args
        method = args.method if self.training else 'sft'
        has_image = self._has_image(input_ids, has_image)
        n_img = int(has_image.sum())
        if pixel_values is not None and n_img == 0:
            raise ValueError('pixel_values were given but no row has image '
                             'tokens')
        if n_img and pixel_values is None:
            raise ValueError(f'{n_img} rows have image tokens but '
                             'pixel_values is None')
        make_pairs = method != 'sft' and n_img > 0
        if make_pairs and n_img < 2:
            self._warn_once(
                'single', 'MergeMix: a batch with a single image has no '
                'partner; it is trained with SFT only (one-time warning).')
            make_pairs = False
        if not make_pairs:
            hidden, _, _ = self._hidden(input_ids, attention_mask,
                                        pixel_values, image_grid_thw,
                                        mm_token_type_ids, False)
            logp_w, n_tok = response_logps(hidden, labels,
                                           self.adapter.lm_head)
            sft = sft_loss_from_logps(logp_w, n_tok)
            simpo = None if method == 'sft' else sft * 0.
            loss = sft if method == 'sft' else self._combine(sft, simpo)
            return MergeMixOutput(
                loss=loss, sft_loss=sft, simpo_loss=simpo,
                logp_winner=logp_w, num_tokens=n_tok)

        if lam is None:
            lam = float(torch.rand((), generator=generator))
        lam = float(lam)
        if not 0. <= lam <= 1.:
            raise ValueError(f'lam={lam} must lie in [0, 1]')
        want_saliency = method == 'mergemix'
        img_rows = has_image.nonzero(as_tuple=True)[0]

        # Winner encoding; LLaVA reuses this tower pass for the saliency.
        feats_w, saliency = self.adapter.encode(
            pixel_values, image_grid_thw, self.merge_num, want_saliency)
        if saliency is not None and self.kind == 'llava':
            saliency = saliency._replace(
                patch_scores=saliency.patch_scores.detach())
        with torch.no_grad():
            losers = self.adapter.build_losers(pixel_values, image_grid_thw,
                                               saliency, lam, generator)
        num_pairs = int(losers.image_index.numel())
        if num_pairs == 0:
            self._warn_once(
                'nopair', 'MergeMix: no image in the batch has a same-size '
                'partner; those steps use SFT only (one-time warning).')
        pair_rows = img_rows[losers.image_index]
        lab_l = labels[pair_rows]
        mask_l = None if attention_mask is None else attention_mask[pair_rows]
        tt_l = None if mm_token_type_ids is None else mm_token_type_ids[
            pair_rows]
        lm_head = self.adapter.lm_head

        if args.loser_grad and num_pairs:
            feats_l = None
            if self.kind == 'llava':
                feats_l, _ = self.adapter.encode(losers.pixel_values, None,
                                                 self.merge_num, False)
            hidden = self.adapter.hidden(
                torch.cat([input_ids, input_ids[pair_rows]]),
                None if attention_mask is None else torch.cat(
                    [attention_mask, mask_l]),
                image_features=None if feats_l is None else torch.cat(
                    [feats_w, feats_l]),
                pixel_values=torch.cat([pixel_values, losers.pixel_values]),
                image_grid_thw=None if image_grid_thw is None else torch.cat(
                    [image_grid_thw, losers.image_grid_thw]),
                mm_token_type_ids=None if mm_token_type_ids is None else
                torch.cat([mm_token_type_ids, tt_l]))
            logp, n_all = response_logps(hidden, torch.cat([labels, lab_l]),
                                         lm_head)
            B = input_ids.shape[0]
            logp_w, n_tok, logp_l = logp[:B], n_all[:B], logp[B:]
        else:
            hidden = self.adapter.hidden(
                input_ids, attention_mask, image_features=feats_w,
                pixel_values=pixel_values, image_grid_thw=image_grid_thw,
                mm_token_type_ids=mm_token_type_ids)
            logp_w, n_tok = response_logps(hidden, labels, lm_head)
            logp_l = logp_w.new_zeros(0)
            if num_pairs:
                with torch.no_grad():
                    feats_l = None
                    if self.kind == 'llava':
                        feats_l, _ = self.adapter.encode(
                            losers.pixel_values, None, self.merge_num, False)
                    hidden_l = self.adapter.hidden(
                        input_ids[pair_rows], mask_l, image_features=feats_l,
                        pixel_values=losers.pixel_values,
                        image_grid_thw=losers.image_grid_thw,
                        mm_token_type_ids=tt_l)
                    logp_l, _ = response_logps(hidden_l, lab_l, lm_head)

        sft = sft_loss_from_logps(logp_w, n_tok)
        lam_margin = losers.lam_kept.to(logp_w.dtype)
        if args.margin_lam == 'nominal':
            lam_margin = torch.full_like(lam_margin, lam)
        n_pair = n_tok[pair_rows]
        empty = n_pair == 0
        if empty.any():
            rows = pair_rows[empty].tolist()
            raise ValueError(f'batch rows {rows} have an empty response (no '
                             'labelled token); check the data / max_length')
        length = None
        if args.length_norm == 'padded':
            # The official slice length: logits cut after the visual tokens
            # against labels that hold one <image> placeholder instead of
            # them, i.e. the padded length without the visual tokens.
            n_visual = (input_ids[pair_rows] == self.adapter.image_token_id
                        ).sum(1).to(n_pair.dtype)
            length = labels.shape[1] - n_visual
        simpo = mixed_simpo_loss(
            logp_w[pair_rows], logp_l, n_pair, lam_margin, beta=args.beta,
            length=length)
        return MergeMixOutput(
            loss=self._combine(sft, simpo),
            sft_loss=sft,
            simpo_loss=simpo,
            logp_winner=logp_w,
            num_tokens=n_tok,
            logp_loser=logp_l,
            pair_rows=pair_rows,
            lam=lam_margin,
            lam_kept=losers.lam_kept)

    def _combine(self, sft: Tensor, simpo: Tensor) -> Tensor:
        if self.mm_args.loss_combine == 'sum':
            return sft + simpo
        return 0.5 * sft + 0.5 * simpo

    # ------------------------------------------------------------------ #
    # inference
    # ------------------------------------------------------------------ #
    @torch.no_grad()
    def generate(self,
                 input_ids: Tensor,
                 attention_mask: Optional[Tensor] = None,
                 pixel_values: Optional[Tensor] = None,
                 image_grid_thw: Optional[Tensor] = None,
                 mm_token_type_ids: Optional[Tensor] = None,
                 **generate_kwargs) -> Tensor:
        """Generate with the model's visual-token budget.

        Prompts must be left-padded. For LLaVA the ToMe tower encodes the
        images and ``generate`` runs on ``inputs_embeds`` (only the new
        tokens are returned); Qwen2.5-VL uses its own ``generate`` (the
        prompt is returned too, as Hugging Face does).

        Returns:
            Tensor: Generated token ids.
        """
        if self.kind == 'llava':
            feats = None
            if pixel_values is not None:
                feats, _ = self.adapter.encode(pixel_values, None,
                                               self.merge_num, False)
            embeds = self.adapter.embed(input_ids, feats)
            return self.vlm.generate(
                inputs_embeds=embeds, attention_mask=attention_mask,
                **generate_kwargs)
        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask,
                      pixel_values=pixel_values,
                      image_grid_thw=image_grid_thw)
        if self.adapter._accepts_tt:
            kwargs['mm_token_type_ids'] = mm_token_type_ids if \
                mm_token_type_ids is not None else (
                    input_ids == self.adapter.image_token_id).int()
        return self.vlm.generate(**kwargs, **generate_kwargs)
