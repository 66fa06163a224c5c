"""Tiny random LLaVA / Qwen2.5-VL models built locally (no hub access).

Used by the tests, the CPU demo and ``tools/mllm/train.py --tiny``: a
byte-level BPE tokenizer is trained with ``tokenizers`` on the given texts,
and the model is built from explicit configs (a few layers, hidden 32-64)
with random weights; the image processors get explicit sizes.
"""
from typing import Iterable, Optional, Sequence, Tuple

import torch

__all__ = [
    'LLAVA_SPECIAL_TOKENS', 'QWEN_SPECIAL_TOKENS', 'train_tiny_tokenizer',
    'build_tiny_llava', 'build_tiny_qwen2_5_vl'
]

LLAVA_SPECIAL_TOKENS = ('<unk>', '<s>', '</s>', '<pad>', '<image>')
QWEN_SPECIAL_TOKENS = ('<unk>', '<|endoftext|>', '<|im_start|>', '<|im_end|>',
                       '<|vision_start|>', '<|vision_end|>', '<|image_pad|>',
                       '<|video_pad|>')


def train_tiny_tokenizer(texts: Iterable[str],
                         vocab_size: int = 512,
                         template: str = 'vicuna_v1'):
    """Train a byte-level BPE tokenizer locally and wrap it for transformers.

    Args:
        texts (Iterable[str]): Training corpus.
        vocab_size (int): Target vocabulary size (>= 256 + specials).
            Defaults to 512.
        template (str): ``'vicuna_v1'`` (LLaVA specials: ``<s>``, ``</s>``,
            ``<pad>``, ``<image>``) or ``'qwen2_5_vl'`` (Qwen specials).
            Defaults to ``'vicuna_v1'``.

    Returns:
        PreTrainedTokenizerFast: The tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import trainers
    from transformers import PreTrainedTokenizerFast

    if template == 'vicuna_v1':
        specials = LLAVA_SPECIAL_TOKENS
    elif template == 'qwen2_5_vl':
        specials = QWEN_SPECIAL_TOKENS
    else:
        raise ValueError(f'template={template!r} must be vicuna_v1 or '
                         'qwen2_5_vl')
    tok = Tokenizer(models.BPE(unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    if template == 'vicuna_v1':
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token='<s>', eos_token='</s>',
            pad_token='<pad>', unk_token='<unk>',
            additional_special_tokens=['<image>'])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token='<|im_end|>',
        pad_token='<|endoftext|>', unk_token='<unk>',
        additional_special_tokens=list(specials[2:]))


def build_tiny_llava(tokenizer,
                     image_size: int = 32,
                     patch_size: int = 4,
                     vision_hidden: int = 32,
                     vision_layers: int = 3,
                     vision_heads: int = 2,
                     text_hidden: int = 64,
                     text_layers: int = 2,
                     text_heads: int = 4,
                     feature_layer: int = -2,
                     seed: Optional[int] = 0) -> Tuple[torch.nn.Module,
                                                       object]:
    """A random ``LlavaForConditionalGeneration`` and its image processor.

    Args:
        tokenizer: Tokenizer with ``<image>``, bos/eos/pad tokens.
        image_size (int): Tower input size. Defaults to 32.
        patch_size (int): CLIP patch size. Defaults to 4.
        vision_hidden (int): CLIP width. Defaults to 32.
        vision_layers (int): CLIP blocks. Defaults to 3.
        vision_heads (int): CLIP heads. Defaults to 2.
        text_hidden (int): Llama width. Defaults to 64.
        text_layers (int): Llama blocks. Defaults to 2.
        text_heads (int): Llama heads. Defaults to 4.
        feature_layer (int): ``vision_feature_layer``. Defaults to -2.
        seed (int, optional): Seed for the random weights. Defaults to 0.

    Returns:
        tuple: ``(model, CLIPImageProcessor)``.
    """
    from transformers import (CLIPImageProcessor, CLIPVisionConfig,
                              LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration)
    image_token_id = tokenizer.convert_tokens_to_ids('<image>')
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=2 * vision_hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden)
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden,
        intermediate_size=2 * text_hidden,
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        num_key_value_heads=max(text_heads // 2, 1),
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    n_patches = (image_size // patch_size)**2
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        vision_feature_layer=feature_layer,
        vision_feature_select_strategy='default',
        image_seq_length=n_patches)
    config.pad_token_id = tokenizer.pad_token_id
    if seed is not None:
        torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    processor = CLIPImageProcessor(
        size={'shortest_edge': image_size},
        crop_size={'height': image_size, 'width': image_size},
        do_center_crop=True)
    return model, processor


def build_tiny_qwen2_5_vl(tokenizer,
                          patch_size: int = 4,
                          merge_size: int = 2,
                          window_size: int = 16,
                          vision_hidden: int = 32,
                          vision_depth: int = 4,
                          fullatt_block_indexes: Sequence[int] = (1, 3),
                          text_hidden: int = 64,
                          text_layers: int = 2,
                          text_heads: int = 4,
                          image_pixels: Tuple[int, int] = (16 * 16, 48 * 48),
                          seed: Optional[int] = 0):
    """A random ``Qwen2_5_VLForConditionalGeneration`` and image processor.

    Args:
        tokenizer: Tokenizer with the Qwen special tokens
            (:data:`QWEN_SPECIAL_TOKENS`).
        patch_size (int): Vision patch size. Defaults to 4.
        merge_size (int): Spatial merge size. Defaults to 2.
        window_size (int): Window side in pixels. Defaults to 16.
        vision_hidden (int): Vision width. Defaults to 32.
        vision_depth (int): Vision blocks. Defaults to 4.
        fullatt_block_indexes (Sequence[int]): Full-attention blocks.
            Defaults to (1, 3).
        text_hidden (int): LLM width. Defaults to 64.
        text_layers (int): LLM blocks. Defaults to 2.
        text_heads (int): LLM heads. Defaults to 4.
        image_pixels (tuple[int, int]): ``(min_pixels, max_pixels)`` of the
            image processor. Defaults to (256, 2304).
        seed (int, optional): Seed for the random weights. Defaults to 0.

    Returns:
        tuple: ``(model, Qwen2VLImageProcessor)``.
    """
    from transformers import (Qwen2_5_VLConfig,
                              Qwen2_5_VLForConditionalGeneration)
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import \
        Qwen2VLImageProcessor
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    head_dim = text_hidden // text_heads
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    config = Qwen2_5_VLConfig(
        vision_config=dict(
            depth=vision_depth,
            hidden_size=vision_hidden,
            intermediate_size=2 * vision_hidden,
            num_heads=2,
            out_hidden_size=text_hidden,
            patch_size=patch_size,
            spatial_merge_size=merge_size,
            temporal_patch_size=2,
            window_size=window_size,
            fullatt_block_indexes=list(fullatt_block_indexes),
            in_channels=3),
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=text_hidden,
            intermediate_size=2 * text_hidden,
            num_hidden_layers=text_layers,
            num_attention_heads=text_heads,
            num_key_value_heads=max(text_heads // 2, 1),
            max_position_embeddings=1024,
            rope_parameters=dict(rope_type='default', rope_theta=10000.0,
                                 mrope_section=mrope),
            bos_token_id=None,
            eos_token_id=ids['<|im_end|>'],
            pad_token_id=ids['<|endoftext|>']),
        image_token_id=ids['<|image_pad|>'],
        video_token_id=ids['<|video_pad|>'],
        vision_start_token_id=ids['<|vision_start|>'],
        vision_end_token_id=ids['<|vision_end|>'])
    if seed is not None:
        torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = ids['<|endoftext|>']
    model.generation_config.eos_token_id = ids['<|im_end|>']
    processor = Qwen2VLImageProcessor(
        patch_size=patch_size,
        merge_size=merge_size,
        temporal_patch_size=2,
        size={'shortest_edge': image_pixels[0],
              'longest_edge': image_pixels[1]})
    return model, processor
