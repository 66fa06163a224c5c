"""A CPU demo on real data: "Which digit is shown?" with a tiny LLaVA.

The UCI handwritten digits embedded in scikit-learn (1,797 8x8 images,
fixed split: 1,347 train / 450 test, see
:func:`mergemix_mm.datasets.digits_split_indices`) are turned into LLaVA
conversations (``"<image>\\nWhich digit is shown?"`` -> ``"seven"``). A tiny
random LLaVA (CLIP + Llama, a locally trained tokenizer) is trained from
scratch with SFT or SFT + MergeMix SimPO, and scored on the held-out split by
greedy decoding (exact match of the answer word) and by ranking the ten
answers by log-likelihood.
"""
import json
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from .collator import ConversationCollator
from .config import MergeMixArguments
from .model import MergeMixVLM
from .tiny import build_tiny_llava, train_tiny_tokenizer

__all__ = [
    'DIGIT_WORDS', 'DIGIT_QUESTION', 'DigitsDemoConfig', 'digit_samples',
    'export_digits_llava', 'build_demo_model', 'evaluate_digits',
    'train_digits', 'run_digits_demo'
]

DIGIT_WORDS = ('zero', 'one', 'two', 'three', 'four', 'five', 'six',
               'seven', 'eight', 'nine')
DIGIT_QUESTION = 'Which digit is shown?'


def digit_samples(split: str, img_size: int = 32) -> List[dict]:
    """Dataset items (the :class:`LlavaConversationDataset` item format)."""
    from PIL import Image

    from mergemix_mm.datasets import load_digits_images
    images, labels = load_digits_images(split, img_size)
    return [
        dict(id=f'{split}{i}', image=Image.fromarray(img),
             conversation=[('user', f'<image>\n{DIGIT_QUESTION}'),
                           ('assistant', DIGIT_WORDS[int(label)])],
             label=int(label))
        for i, (img, label) in enumerate(zip(images, labels))
    ]


def export_digits_llava(out_dir: str, img_size: int = 32) -> Dict[str, str]:
    """Write the digits as PNGs plus LLaVA JSON files (mix665k shape).

    Returns:
        dict: Paths of ``train.json``, ``test.json`` and the image folder.

    Raises:
        ValueError: If ``img_size`` is not an int >= 8 (before anything is
            written).
    """
    if isinstance(img_size, bool) or not isinstance(img_size,
                                                    int) or img_size < 8:
        raise ValueError(f'img_size={img_size!r} must be an int >= 8.')
    image_dir = osp.join(out_dir, 'images')
    os.makedirs(image_dir, exist_ok=True)
    paths = {'image_folder': image_dir}
    for split in ('train', 'test'):
        records = []
        for item in digit_samples(split, img_size):
            name = f'{item["id"]}.png'
            item['image'].save(osp.join(image_dir, name))
            records.append(dict(
                id=item['id'], image=name, conversations=[
                    {'from': 'human', 'value': item['conversation'][0][1]},
                    {'from': 'gpt', 'value': item['conversation'][1][1]},
                ]))
        path = osp.join(out_dir, f'{split}.json')
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(records, f, indent=1)
        paths[split] = path
    return paths


@dataclass
class DigitsDemoConfig:
    """Settings of one demo run (defaults: the committed benchmark)."""
    method: str = 'sft'
    seed: int = 0
    epochs: int = 6
    batch_size: int = 32
    lr: float = 2e-3
    merge_num: int = 32
    img_size: int = 32
    patch_size: int = 4
    vision_hidden: int = 48
    vision_layers: int = 4
    text_hidden: int = 64
    text_layers: int = 2
    vocab_size: int = 384
    train_limit: Optional[int] = None
    extra: dict = field(default_factory=dict)


def _corpus() -> List[str]:
    return [f'USER: {DIGIT_QUESTION} ASSISTANT: {w}' for w in DIGIT_WORDS
            ] * 20


def build_demo_model(cfg: DigitsDemoConfig):
    """Tokenizer, tiny LLaVA, image processor and the MergeMix wrapper."""
    tok = train_tiny_tokenizer(_corpus(), vocab_size=cfg.vocab_size)
    model, processor = build_tiny_llava(
        tok, image_size=cfg.img_size, patch_size=cfg.patch_size,
        vision_hidden=cfg.vision_hidden, vision_layers=cfg.vision_layers,
        text_hidden=cfg.text_hidden, text_layers=cfg.text_layers,
        seed=cfg.seed)
    mm_args = MergeMixArguments(method=cfg.method, merge_num=cfg.merge_num,
                                **cfg.extra)
    return tok, processor, MergeMixVLM(model, mm_args)


@torch.no_grad()
def evaluate_digits(wrapper: MergeMixVLM, tok, processor, samples,
                    batch_size: int = 150) -> Dict[str, float]:
    """Held-out accuracy: greedy exact match and 10-way answer ranking."""
    wrapper.eval()
    n_vis = wrapper.num_visual_tokens()
    prompt_col = ConversationCollator(tok, processor, num_image_tokens=n_vis,
                                      image_size=processor.crop_size[
                                          'height'], system_prompt='',
                                      prompt_only=True)
    full_col = ConversationCollator(tok, processor, num_image_tokens=n_vis,
                                    image_size=processor.crop_size['height'],
                                    system_prompt='')
    exact = ranked = 0
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        batch = prompt_col(chunk)
        gen = wrapper.generate(batch['input_ids'], batch['attention_mask'],
                               batch['pixel_values'], max_new_tokens=4,
                               do_sample=False)
        texts = tok.batch_decode(gen, skip_special_tokens=True)
        exact += sum(t.strip() == s['conversation'][1][1]
                     for t, s in zip(texts, chunk))
        # rank the ten answers by summed log-likelihood
        scores = []
        for word in DIGIT_WORDS:
            cands = [dict(s, conversation=[s['conversation'][0],
                                           ('assistant', word)])
                     for s in chunk]
            out = wrapper(**full_col(cands))
            scores.append(out.logp_winner)
        pred = torch.stack(scores, 1).argmax(1)
        ranked += sum(int(p) == s['label'] for p, s in zip(pred, chunk))
    n = len(samples)
    return dict(exact_match=exact / n, choice_acc=ranked / n)


def train_digits(wrapper: MergeMixVLM, tok, processor, train: List[dict],
                 cfg: DigitsDemoConfig, output_dir: str):
    """Train ``wrapper`` on ``train`` with :class:`MergeMixTrainer`.

    Returns:
        tuple: ``(trainer, train_seconds)``.
    """
    from transformers import TrainingArguments

    from .trainer import MergeMixTrainer
    collator = ConversationCollator(
        tok, processor, num_image_tokens=wrapper.num_visual_tokens(),
        image_size=cfg.img_size, system_prompt='')
    import transformers
    warmup = dict(warmup_steps=0.05) if int(
        transformers.__version__.split('.')[0]) >= 5 else dict(
            warmup_ratio=0.05)
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        lr_scheduler_type='cosine',
        weight_decay=0.0,
        logging_steps=20,
        save_strategy='no',
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=cfg.seed,
        data_seed=cfg.seed,
        **warmup)
    trainer = MergeMixTrainer(model=wrapper, args=args, train_dataset=train,
                              data_collator=collator, processing_class=tok)
    t0 = time.perf_counter()
    trainer.train()
    return trainer, time.perf_counter() - t0


def run_digits_demo(cfg: DigitsDemoConfig, output_dir: str,
                    train=None, test=None,
                    init_state: Optional[dict] = None) -> Dict[str, float]:
    """Train one tiny LLaVA on the digits and evaluate it.

    Args:
        cfg (DigitsDemoConfig): Settings.
        output_dir (str): Trainer output folder (nothing is saved).
        train (list, optional): Training items; the digits train split if
            None.
        test (list, optional): Test items; the digits test split if None.
        init_state (dict, optional): State dict of the LLaVA model to start
            from (e.g. after an SFT stage). Defaults to None (random).

    Returns:
        dict: ``exact_match``, ``choice_acc``, ``train_seconds``, ``steps``,
        ``final_sft_loss`` (mean of the last logged values).
    """
    train = digit_samples('train', cfg.img_size) if train is None else train
    test = digit_samples('test', cfg.img_size) if test is None else test
    if cfg.train_limit:
        train = train[:cfg.train_limit]
    tok, processor, wrapper = build_demo_model(cfg)
    if init_state is not None:
        wrapper.vlm.load_state_dict(init_state)
    trainer, seconds = train_digits(wrapper, tok, processor, train, cfg,
                                    output_dir)
    metrics = evaluate_digits(wrapper, tok, processor, test)
    logged = [h['sft_loss'] for h in trainer.state.log_history
              if 'sft_loss' in h]
    metrics.update(
        train_seconds=seconds,
        steps=trainer.state.global_step,
        final_sft_loss=float(sum(logged[-2:]) / max(len(logged[-2:]), 1)))
    return metrics
