"""MergeMix for multi-modal LLMs on Hugging Face transformers (optional extra).

Install with ``pip install -e .[mllm]`` (or ``requirements/mllm.txt``). The
paper's second half: MergeMix-mixed images are the *losers* of preference
pairs whose *winners* are the clean images with the same response, trained
with SFT + a mixed SimPO loss whose margin is ``1 - lambda``
(``docs/mllm.md``). Supported models: LLaVA-1.5
(``LlavaForConditionalGeneration`` with a CLIP tower; ToMe inside the tower
sets the visual-token budget) and Qwen2.5-VL (attention used for the mask
only).
"""
from .adapters import (LlavaAdapter, LoserInputs, Qwen25VLAdapter,
                       build_adapter)
from .baselines import cutmix_loser, mixup_loser, resizemix_loser
from .collator import TEMPLATES, ConversationCollator
from .config import LLAVA_COMPAT, METHODS, MergeMixArguments
from .data import LlavaConversationDataset, load_records, validate_record
from .loss import (IGNORE_INDEX, mixed_simpo_loss, response_logps,
                   sequence_logps, sft_loss_from_logps)
from .mask import (derangement, grouped_partner, merged_topk_keep_mask,
                   mix_with_mask, topk_keep_mask, upsample_patch_mask)
from .model import MergeMixOutput, MergeMixVLM
from .pairs import Losers, Saliency, build_losers
from .tiny import (build_tiny_llava, build_tiny_qwen2_5_vl,
                   train_tiny_tokenizer)
from .tome_clip import CLIPToMeOutput, clip_merge_schedule, clip_tome_forward
from .tome_qwen import (QWEN_TOME_UNSOUND, qwen_patchify, qwen_unpatchify,
                        qwen_vision_saliency)
from .trainer import MergeMixTrainer

__all__ = [
    'MergeMixArguments', 'METHODS', 'LLAVA_COMPAT', 'MergeMixVLM',
    'MergeMixOutput', 'MergeMixTrainer', 'ConversationCollator', 'TEMPLATES',
    'LlavaConversationDataset', 'load_records', 'validate_record',
    'IGNORE_INDEX', 'sequence_logps', 'response_logps', 'mixed_simpo_loss',
    'sft_loss_from_logps', 'derangement', 'grouped_partner',
    'topk_keep_mask', 'merged_topk_keep_mask', 'upsample_patch_mask',
    'mix_with_mask', 'mixup_loser', 'cutmix_loser', 'resizemix_loser',
    'Saliency', 'Losers', 'build_losers', 'LlavaAdapter', 'Qwen25VLAdapter',
    'LoserInputs', 'build_adapter', 'CLIPToMeOutput', 'clip_tome_forward',
    'clip_merge_schedule', 'QWEN_TOME_UNSOUND', 'qwen_vision_saliency',
    'qwen_patchify', 'qwen_unpatchify', 'build_tiny_llava',
    'build_tiny_qwen2_5_vl', 'train_tiny_tokenizer'
]
