"""Batch collator: chat template, image-token expansion, labels, pixels.

Two templates:

* ``'vicuna_v1'`` (LLaVA-1.5): ``[bos] SYSTEM USER: q ASSISTANT: a</s>USER:
  ...``; the response ``" a</s>"`` is labelled.
* ``'qwen2_5_vl'``: ``<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\n
  <|vision_start|><|image_pad|>*n<|vision_end|>q<|im_end|>\\n<|im_start|>
  assistant\\na<|im_end|>\\n``; ``"a<|im_end|>"`` is labelled (the format of
  Qwen2.5-VL's chat template).

The image placeholder is expanded to exactly the number of visual tokens the
LLM will receive (LLaVA: ``num_image_tokens`` = ``N - merge_num``; Qwen: the
image's grid size / 4), so labels are aligned with the *expanded* sequence:
prompt, image and padding tokens are ``-100``. Segments are tokenized
separately and concatenated, so the label boundary is exact.

Bad samples (an image the processor cannot handle or of the wrong size, a
sequence longer than ``max_length``) raise a ``ValueError`` naming the
sample id; with ``skip_bad_samples=True`` they are dropped from the batch
with a logged warning.
"""
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor

from ..utils.checks import check_bool
from .data import IMAGE_PLACEHOLDER
from .loss import IGNORE_INDEX

__all__ = ['ConversationCollator', 'TEMPLATES', 'VICUNA_SYSTEM',
           'QWEN_SYSTEM']

VICUNA_SYSTEM = ('A chat between a curious human and an artificial '
                 'intelligence assistant. The assistant gives helpful, '
                 "detailed, and polite answers to the human's questions.")
QWEN_SYSTEM = 'You are a helpful assistant.'
TEMPLATES = ('vicuna_v1', 'qwen2_5_vl')


class ConversationCollator:
    """Turn dataset items into model inputs.

    Args:
        tokenizer: A Hugging Face tokenizer.
        image_processor: ``CLIPImageProcessor`` (LLaVA) or
            ``Qwen2VLImageProcessor`` (Qwen2.5-VL).
        template (str): ``'vicuna_v1'`` or ``'qwen2_5_vl'``.
            Defaults to ``'vicuna_v1'``.
        num_image_tokens (int, optional): Visual tokens per image (LLaVA;
            ``model.num_visual_tokens()``). Required for ``'vicuna_v1'``.
        image_size (int, optional): Expected square pixel size of a processed
            image (LLaVA; the tower's ``image_size``); checked per sample.
        image_token (str, optional): Token that stands for one visual token.
            Defaults to ``'<image>'`` (LLaVA) or ``'<|image_pad|>'`` (Qwen).
        system_prompt (str, optional): System text; None uses the template's
            default, ``''`` disables it. Defaults to None.
        max_length (int, optional): Longest allowed sequence. Defaults to
            None (no limit).
        merge_size (int): Qwen spatial merge size. Defaults to 2.
        prompt_only (bool): Drop the last response and left-pad (for
            generation); the dropped responses are returned as
            ``'answers'``. Defaults to False.
        skip_bad_samples (bool): Drop bad samples with a warning instead of
            raising. Defaults to False.
    """

    def __init__(self,
                 tokenizer,
                 image_processor,
                 template: str = 'vicuna_v1',
                 num_image_tokens: Optional[int] = None,
                 image_size: Optional[int] = None,
                 image_token: Optional[str] = None,
                 system_prompt: Optional[str] = None,
                 max_length: Optional[int] = None,
                 merge_size: int = 2,
                 prompt_only: bool = False,
                 skip_bad_samples: bool = False):
        if template not in TEMPLATES:
            raise ValueError(f'template={template!r} must be one of '
                             f'{TEMPLATES}')
        if template == 'vicuna_v1' and (num_image_tokens is None
                                        or num_image_tokens < 1):
            raise ValueError(
                f'num_image_tokens={num_image_tokens!r}: the vicuna_v1 '
                '(LLaVA) template needs the visual-token count per image, '
                'e.g. model.num_visual_tokens()')
        if max_length is not None and max_length < 2:
            raise ValueError(f'max_length={max_length} must be >= 2')
        for name, value in (('prompt_only', prompt_only),
                            ('skip_bad_samples', skip_bad_samples)):
            check_bool('ConversationCollator', name, value)
        if isinstance(merge_size, bool) or not isinstance(
                merge_size, int) or merge_size < 1:
            raise ValueError(f'ConversationCollator: merge_size='
                             f'{merge_size!r} must be an int >= 1.')
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.template = template
        self.num_image_tokens = num_image_tokens
        self.image_size = image_size
        self.max_length = max_length
        self.merge_size = merge_size
        self.prompt_only = prompt_only
        self.skip_bad_samples = skip_bad_samples
        if image_token is None:
            image_token = (IMAGE_PLACEHOLDER if template == 'vicuna_v1' else
                           '<|image_pad|>')
        self.image_token_id = self._token_id(image_token, 'image_token')
        if system_prompt is None:
            system_prompt = (VICUNA_SYSTEM
                             if template == 'vicuna_v1' else QWEN_SYSTEM)
        self.system_prompt = system_prompt
        if template == 'qwen2_5_vl':
            self._qwen_ids = {
                name: self._token_id(name, name)
                for name in ('<|im_start|>', '<|im_end|>',
                             '<|vision_start|>', '<|vision_end|>')
            }
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id
        if pad is None:
            raise ValueError('the tokenizer has neither a pad nor an eos '
                             'token')
        self.pad_token_id = int(pad)

    def _token_id(self, token: str, setting: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise ValueError(f'{setting}={token!r} is not a token of the '
                             'tokenizer')
        return int(tid)

    # ------------------------------------------------------------------ #
    def _text(self, text: str) -> List[int]:
        return self.tokenizer(text, add_special_tokens=False)['input_ids']

    def _prompt(self, text: str, n_image: int) -> List[int]:
        """Tokenize ``text`` with the image placeholder expanded."""
        parts = text.split(IMAGE_PLACEHOLDER)
        ids = self._text(parts[0]) if parts[0] else []
        for part in parts[1:]:
            if self.template == 'qwen2_5_vl':
                ids += [self._qwen_ids['<|vision_start|>']]
                ids += [self.image_token_id] * n_image
                ids += [self._qwen_ids['<|vision_end|>']]
            else:
                ids += [self.image_token_id] * n_image
            if part:
                ids += self._text(part)
        return ids

    def _segments(self, turns: Sequence[Tuple[str, str]],
                  n_image: int) -> Tuple[List[int], List[int]]:
        """Token ids and labels of one conversation."""
        ids, labels = [], []

        def add(tokens, target):
            ids.extend(tokens)
            labels.extend(tokens if target else [IGNORE_INDEX] * len(tokens))

        tok = self.tokenizer
        if self.template == 'vicuna_v1':
            if tok.bos_token_id is not None:
                add([tok.bos_token_id], False)
            eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
            prefix = f'{self.system_prompt} ' if self.system_prompt else ''
            for t in range(0, len(turns), 2):
                question = turns[t][1]
                add(self._prompt(f'{prefix}USER: {question} ASSISTANT:',
                                 n_image), False)
                prefix = ''
                if t + 1 < len(turns):
                    add(self._text(' ' + turns[t + 1][1]) + eos, True)
            return ids, labels
        start, end = self._qwen_ids['<|im_start|>'], self._qwen_ids[
            '<|im_end|>']
        newline = self._text('\n')
        if self.system_prompt:
            add([start] + self._text('system\n' + self.system_prompt) +
                [end] + newline, False)
        for t in range(0, len(turns), 2):
            add([start] + self._text('user\n') +
                self._prompt(turns[t][1], n_image) + [end] + newline +
                [start] + self._text('assistant\n'), False)
            if t + 1 < len(turns):
                add(self._text(turns[t + 1][1]) + [end], True)
                add(newline, False)
        return ids, labels

    # ------------------------------------------------------------------ #
    def _process_image(self, sample: dict) -> Dict[str, Tensor]:
        """Process one image; errors name the sample."""
        name = f'sample id={sample.get("id", "?")!r}'
        try:
            out = self.image_processor(
                images=[sample['image']], return_tensors='pt')
        except Exception as err:  # noqa: BLE001 - re-raised with the sample
            raise ValueError(f'{name}: the image processor failed on its '
                             f'image: {err}') from err
        pv = out['pixel_values']
        if self.template == 'vicuna_v1':
            if self.image_size is not None and tuple(pv.shape[-2:]) != (
                    self.image_size, self.image_size):
                raise ValueError(
                    f'{name}: the processed image is '
                    f'{pv.shape[-2]}x{pv.shape[-1]} but the vision tower '
                    f'takes {self.image_size}x{self.image_size} '
                    '(vision_config.image_size); set the image processor '
                    'crop_size/size to the tower size')
            return dict(pixel_values=pv[0], n_image=self.num_image_tokens)
        grid = out['image_grid_thw'][0]
        unit = self.merge_size**2
        n_tokens = int(grid.prod()) // unit
        if int(grid.prod()) % unit or n_tokens < 1:
            raise ValueError(f'{name}: image grid {grid.tolist()} does not '
                             f'fit merge_size={self.merge_size}')
        return dict(pixel_values=pv, image_grid_thw=grid, n_image=n_tokens)

    def _encode(self, sample: dict) -> dict:
        name = f'sample id={sample.get("id", "?")!r}'
        turns = list(sample['conversation'])
        answer = None
        if self.prompt_only:
            if turns and turns[-1][0] == 'assistant':
                answer = turns[-1][1]
                turns = turns[:-1]
        image = None
        n_image = 0
        if sample.get('image') is not None:
            image = self._process_image(sample)
            n_image = image['n_image']
        elif any(IMAGE_PLACEHOLDER in text for _, text in turns):
            raise ValueError(f'{name}: {IMAGE_PLACEHOLDER} in the text but '
                             'no image')
        ids, labels = self._segments(turns, n_image)
        if not self.prompt_only and all(v == IGNORE_INDEX for v in labels):
            raise ValueError(f'{name}: the sample has no response token')
        if self.max_length is not None and len(ids) > self.max_length:
            raise ValueError(
                f'{name}: {len(ids)} tokens exceed max_length='
                f'{self.max_length} (model_max_length); truncating would cut '
                'the image tokens or the response')
        return dict(id=sample.get('id'), ids=ids, labels=labels, image=image,
                    answer=answer)

    def __call__(self, samples: Sequence[dict]) -> Dict[str, Any]:
        encoded = []
        for sample in samples:
            try:
                encoded.append(self._encode(sample))
            except ValueError as err:
                if not self.skip_bad_samples:
                    raise
                print_log(f'dropping a bad sample from the batch: {err}',
                          logger='current', level=logging.WARNING)
        if not encoded:
            raise ValueError('every sample of the batch was bad (see the '
                             'warnings above)')
        length = max(len(e['ids']) for e in encoded)
        B = len(encoded)
        input_ids = torch.full((B, length), self.pad_token_id,
                               dtype=torch.long)
        labels = torch.full((B, length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros(B, length, dtype=torch.long)
        for i, e in enumerate(encoded):
            n = len(e['ids'])
            sl = slice(length - n, length) if self.prompt_only else slice(0, n)
            input_ids[i, sl] = torch.tensor(e['ids'], dtype=torch.long)
            labels[i, sl] = torch.tensor(e['labels'], dtype=torch.long)
            attention_mask[i, sl] = 1
        has_image = torch.tensor([e['image'] is not None for e in encoded])
        batch = dict(input_ids=input_ids, attention_mask=attention_mask,
                     labels=labels, has_image=has_image,
                     sample_ids=[e['id'] for e in encoded])
        images = [e['image'] for e in encoded if e['image'] is not None]
        if images:
            if self.template == 'vicuna_v1':
                batch['pixel_values'] = torch.stack(
                    [im['pixel_values'] for im in images])
            else:
                batch['pixel_values'] = torch.cat(
                    [im['pixel_values'] for im in images])
                batch['image_grid_thw'] = torch.stack(
                    [im['image_grid_thw'] for im in images])
        if self.template == 'qwen2_5_vl':
            batch['mm_token_type_ids'] = (
                input_ids == self.image_token_id).int()
        if self.prompt_only:
            batch['answers'] = [e['answer'] for e in encoded]
        return batch
