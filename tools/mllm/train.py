"""Train LLaVA-1.5 / Qwen2.5-VL with SFT + MergeMix SimPO (or a baseline).

Every field of ``ModelArguments``, ``DataArguments``,
:class:`mergemix_mm.mllm.MergeMixArguments` and
``transformers.TrainingArguments`` is a flag; a single ``.json`` argument is
read as a config file. DeepSpeed (``--deepspeed ds.json``), accelerate and
torchrun (``tools/mllm/dist_train.sh``) work as for any HF ``Trainer``.

Examples::

    # LLaVA-1.5 (local HF checkpoint), MergeMix with 288 of 576 tokens merged
    python tools/mllm/train.py --model_name_or_path llava-1.5-7b-hf \\
        --data_path llava_v1_5_mix665k.json --image_folder data/ \\
        --method mergemix --merge_num 288 --output_dir work_dirs/llava_mm \\
        --bf16 --learning_rate 2e-5 --per_device_train_batch_size 4 \\
        --num_train_epochs 1 --warmup_steps 0.03 --lr_scheduler_type cosine

    # smoke run on CPU: a tiny random LLaVA and the embedded digits
    python tools/mllm/demo_digits.py --out data/digits_llava
    python tools/mllm/train.py --tiny llava \\
        --data_path data/digits_llava/train.json \\
        --image_folder data/digits_llava/images --merge_num 32 \\
        --output_dir work_dirs/tiny_llava --max_steps 20 --use_cpu
"""
import json
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Optional

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(
        default=None,
        metadata=dict(help='HF LLaVA (CLIP tower) or Qwen2.5-VL checkpoint '
                      '(local directory or hub id)'))
    tiny: Optional[str] = field(
        default=None,
        metadata=dict(help="'llava' or 'qwen2_5_vl': a tiny random model "
                      'with a tokenizer trained on the data (smoke tests)'))
    freeze_vision_tower: bool = field(
        default=False,
        metadata=dict(help='freeze the vision encoder (the paper unfreezes '
                      "it); the projector (LLaVA's multi_modal_projector, "
                      "Qwen2.5-VL's patch merger) stays trainable"))
    vision_tower_lr: Optional[float] = field(
        default=None,
        metadata=dict(help='learning rate of the vision encoder (default: '
                      '--learning_rate; the paper uses 2e-6 on Qwen2.5-VL)'))
    mm_projector_lr: Optional[float] = field(
        default=None,
        metadata=dict(help='learning rate of the projector (LLaVA '
                      "multi_modal_projector, Qwen2.5-VL patch merger; "
                      'default: --learning_rate)'))
    torch_dtype: Optional[str] = field(
        default=None,
        metadata=dict(help='e.g. bfloat16 (--model_name_or_path only)'))
    attn_implementation: Optional[str] = field(
        default=None,
        metadata=dict(help='e.g. sdpa, flash_attention_2 '
                      '(--model_name_or_path only)'))


@dataclass
class DataArguments:
    data_path: str = field(
        default=None,
        metadata=dict(help='LLaVA conversation .json / .jsonl (mix665k)'))
    image_folder: Optional[str] = field(default=None)
    eval_data_path: Optional[str] = field(default=None)
    template: str = field(
        default='auto',
        metadata=dict(help="'auto', 'vicuna_v1' (LLaVA-1.5) or 'qwen2_5_vl'"))
    system_prompt: Optional[str] = field(
        default=None, metadata=dict(help="default: the template's"))
    model_max_length: Optional[int] = field(default=None)
    skip_bad_samples: bool = field(
        default=False,
        metadata=dict(help='drop bad samples with a logged warning instead '
                      'of stopping'))
    min_pixels: Optional[int] = field(
        default=None, metadata=dict(help='Qwen2.5-VL image budget'))
    max_pixels: Optional[int] = field(
        default=None, metadata=dict(help='Qwen2.5-VL image budget'))


def _texts(dataset):
    for item in dataset.items:
        for _, text in item['conversation']:
            yield text.replace('<image>', '')


def build_model(model_args, data_args, train_set, seed: int = 0):
    """(model, tokenizer, image_processor); ``seed`` seeds the random
    weights of a ``--tiny`` model (``--seed``)."""
    from mergemix_mm.mllm import (build_tiny_llava, build_tiny_qwen2_5_vl,
                                  train_tiny_tokenizer)
    if model_args.tiny is not None:
        if model_args.tiny not in ('llava', 'qwen2_5_vl'):
            raise ValueError(f'tiny={model_args.tiny!r} must be llava or '
                             'qwen2_5_vl')
        for name in ('model_name_or_path', 'torch_dtype',
                     'attn_implementation'):
            if getattr(model_args, name) is not None:
                raise ValueError(
                    f'{name}={getattr(model_args, name)!r} applies to a '
                    f'pretrained model, but tiny={model_args.tiny!r} builds '
                    'a random float32 model; drop one of the two')
        template = 'vicuna_v1' if model_args.tiny == 'llava' else \
            'qwen2_5_vl'
        corpus = list(_texts(train_set)) + [
            'USER: ASSISTANT: system user assistant You are a helpful '
            'assistant.'
        ]
        tok = train_tiny_tokenizer(corpus, vocab_size=512, template=template)
        if model_args.tiny == 'llava':
            model, proc = build_tiny_llava(tok, seed=seed)
        else:
            model, proc = build_tiny_qwen2_5_vl(tok, seed=seed)
        return model, tok, proc
    if model_args.model_name_or_path is None:
        raise ValueError('set --model_name_or_path or --tiny')
    from transformers import AutoModelForImageTextToText, AutoProcessor
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
    kwargs = {}
    if model_args.torch_dtype is not None:
        import torch
        dtype = model_args.torch_dtype
        if dtype != 'auto':
            dtype = getattr(torch, dtype, None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(
                    f'torch_dtype={model_args.torch_dtype!r} is not a torch '
                    "dtype; use 'auto' or a name such as bfloat16, float16, "
                    'float32')
        kwargs['dtype'] = dtype
    if model_args.attn_implementation is not None:
        kwargs['attn_implementation'] = model_args.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(
        model_args.model_name_or_path, **kwargs)
    return model, processor.tokenizer, processor.image_processor


def main(argv=None):
    from mmengine.logging import print_log
    from transformers import HfArgumentParser, TrainingArguments

    from mergemix_mm.mllm import (TEMPLATES, ConversationCollator,
                                  LlavaConversationDataset,
                                  MergeMixArguments, MergeMixTrainer,
                                  MergeMixVLM)
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, MergeMixArguments, TrainingArguments))
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith('.json'):
        model_args, data_args, mm_args, train_args = parser.parse_json_file(
            argv[0])
    else:
        model_args, data_args, mm_args, train_args = \
            parser.parse_args_into_dataclasses(argv)
    if data_args.data_path is None:
        raise ValueError('--data_path is required')
    if data_args.model_max_length is not None and \
            data_args.model_max_length < 2:
        raise ValueError(f'model_max_length={data_args.model_max_length} '
                         'must be >= 2 (or unset: no limit)')
    if train_args.remove_unused_columns:
        train_args.remove_unused_columns = False  # the collator builds inputs

    train_set = LlavaConversationDataset(
        data_args.data_path, data_args.image_folder,
        skip_bad_samples=data_args.skip_bad_samples)
    eval_set = None
    if data_args.eval_data_path:
        eval_set = LlavaConversationDataset(
            data_args.eval_data_path, data_args.image_folder,
            skip_bad_samples=data_args.skip_bad_samples)
    model, tokenizer, image_processor = build_model(
        model_args, data_args, train_set, seed=train_args.seed)
    wrapper = MergeMixVLM(model, mm_args)
    if model_args.freeze_vision_tower:
        # Qwen's tower holds its merger, which is its projector into the LLM
        # (LLaVA keeps its multi_modal_projector outside the tower); the
        # projector stays trainable either way.
        wrapper.adapter.tower.requires_grad_(False)
        wrapper.adapter.projector.requires_grad_(True)
    expected = 'vicuna_v1' if wrapper.kind == 'llava' else 'qwen2_5_vl'
    template = data_args.template
    if template == 'auto':
        template = expected
    elif template in TEMPLATES and template != expected:
        raise ValueError(f'template={template!r} does not fit the '
                         f'{wrapper.kind} model; use {expected!r} or auto')
    budget = {
        name: getattr(data_args, name)
        for name in ('min_pixels', 'max_pixels')
        if getattr(data_args, name) is not None
    }
    for name, value in budget.items():
        if value < 0:
            raise ValueError(f'{name}={value} must not be negative')
    if wrapper.kind == 'llava' and any(budget.values()):
        raise ValueError(
            f'{" / ".join(budget)} set the Qwen2.5-VL image budget; a LLaVA '
            'tower takes vision_config.image_size images and its visual-'
            'token budget is set by --merge_num')
    collator_kwargs = dict(
        template=template, system_prompt=data_args.system_prompt,
        max_length=data_args.model_max_length,
        skip_bad_samples=data_args.skip_bad_samples)
    if wrapper.kind == 'llava':
        collator_kwargs.update(
            num_image_tokens=wrapper.num_visual_tokens(),
            image_size=int(model.config.vision_config.image_size))
    else:
        collator_kwargs['merge_size'] = int(
            model.config.vision_config.spatial_merge_size)
        if data_args.min_pixels or data_args.max_pixels:
            size = dict(image_processor.size)
            if data_args.min_pixels:
                size['shortest_edge'] = data_args.min_pixels
            if data_args.max_pixels:
                size['longest_edge'] = data_args.max_pixels
            low, high = size.get('shortest_edge'), size.get('longest_edge')
            if low is not None and high is not None and low > high:
                given = ('max_pixels' if data_args.max_pixels else
                         "the image processor's longest_edge")
                raise ValueError(
                    f'min_pixels={low} exceeds {given}={high}: the image '
                    'budget needs min_pixels <= max_pixels')
            image_processor.size = size
    collator = ConversationCollator(tokenizer, image_processor,
                                    **collator_kwargs)
    print_log(
        f'MergeMix MLLM training: model={wrapper.kind}, '
        f'method={wrapper.mm_args.method}, merge_num={wrapper.merge_num}, '
        f'settings={json.dumps(vars(wrapper.mm_args))}, '
        f'{len(train_set)} training samples', logger='current')
    trainer = MergeMixTrainer(
        model=wrapper, args=train_args, train_dataset=train_set,
        eval_dataset=eval_set, data_collator=collator,
        processing_class=tokenizer, image_processor=image_processor,
        vision_tower_lr=model_args.vision_tower_lr,
        mm_projector_lr=model_args.mm_projector_lr)
    trainer.train(resume_from_checkpoint=train_args.resume_from_checkpoint)
    trainer.save_model()
    trainer.save_state()
    return trainer


if __name__ == '__main__':
    main()
