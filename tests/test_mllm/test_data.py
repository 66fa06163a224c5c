"""LLaVA JSON data, the collator and bad input."""
import json
import logging

import pytest
import torch
from PIL import Image

from mergemix_mm.mllm import (ConversationCollator, LlavaConversationDataset,
                              MergeMixArguments, clip_merge_schedule)


def _write(tmp_path, records, images=('a.png', 'b.png')):
    folder = tmp_path / 'images'
    folder.mkdir(exist_ok=True)
    for name in images:
        Image.new('RGB', (20, 28), (255, 0, 0)).save(folder / name)
    path = tmp_path / 'data.json'
    path.write_text(json.dumps(records))
    return str(path), str(folder)


def _rec(rid, image='a.png', answer='seven', question='<image>\nWhich?'):
    rec = dict(id=rid, conversations=[
        dict(value=question, **{'from': 'human'}),
        dict(value=answer, **{'from': 'gpt'})
    ])
    if image is not None:
        rec['image'] = image
    return rec


def test_dataset_and_collator_labels(tmp_path, llava_tokenizer, tiny_llava):
    _, processor, tok = tiny_llava
    multi = _rec('m', 'b.png')
    multi['conversations'] += [
        {'from': 'human', 'value': 'And?'}, {'from': 'gpt', 'value': 'two'}]
    path, folder = _write(tmp_path, [
        _rec('x'), multi,
        _rec('t', image=None, question='Say one.', answer='one'),
        _rec('noph', question='Which?')
    ])
    ds = LlavaConversationDataset(path, folder)
    assert len(ds) == 4
    assert ds[2]['image'] is None
    assert ds[3]['conversation'][0][1].startswith('<image>\n')  # prepended
    col = ConversationCollator(tok, processor, num_image_tokens=10,
                               image_size=32)
    batch = col([ds[i] for i in range(4)])
    assert batch['pixel_values'].shape == (3, 3, 32, 32)
    assert batch['has_image'].tolist() == [True, True, False, True]
    eos = tok.eos_token_id
    for row in range(4):
        ids, lab = batch['input_ids'][row], batch['labels'][row]
        kept = lab[lab != -100]
        assert torch.equal(kept, ids[lab != -100])
        assert (lab[ids == tok.convert_tokens_to_ids('<image>')] ==
                -100).all()
        assert kept[-1] == eos
    # the 2-turn sample labels both answers (two eos), never the questions
    assert (batch['labels'][1] == eos).sum() == 2
    text = tok.decode(batch['labels'][1][batch['labels'][1] != -100])
    assert 'seven' in text and 'two' in text and 'And' not in text


def test_bad_records_name_the_sample(tmp_path):
    cases = [
        (_rec('missing', image='nope.png'), "id='missing'.*nope.png"),
        (_rec('empty', answer='  '), "id='empty'.*response.*empty"),
        (_rec('noimg', image=None), "id='noimg'.*no \"image\""),
    ]
    for rec, pattern in cases:
        path, folder = _write(tmp_path, [_rec('ok'), rec])
        with pytest.raises(ValueError, match=pattern):
            LlavaConversationDataset(path, folder)


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_skip_bad_samples_only_when_asked(tmp_path):
    path, folder = _write(tmp_path, [_rec('ok'), _rec('bad', 'nope.png'),
                                     _rec('ok2', answer='')])
    with pytest.raises(ValueError, match='skip_bad_samples'):
        LlavaConversationDataset(path, folder)
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    handler = _Records()
    logger.addHandler(handler)
    try:
        ds = LlavaConversationDataset(path, folder, skip_bad_samples=True)
    finally:
        logger.removeHandler(handler)
    assert len(ds) == 1 and ds.num_dropped == 2
    assert any("sample #1 (id='bad')" in m for m in handler.messages)
    assert any("id='ok2'" in m and 'empty' in m for m in handler.messages)


def test_unreadable_image_is_reported_or_replaced(tmp_path):
    path, folder = _write(tmp_path, [_rec('ok'), _rec('broken', 'b.png')])
    (tmp_path / 'images' / 'b.png').write_bytes(b'not a png')
    ds = LlavaConversationDataset(path, folder)
    with pytest.raises(ValueError, match="id='broken'.*cannot read"):
        ds[1]
    ds = LlavaConversationDataset(path, folder, skip_bad_samples=True)
    assert ds[1]['id'] == 'ok'


def test_image_size_mismatch_names_sample(tiny_llava, make_samples):
    from transformers import CLIPImageProcessor
    _, _, tok = tiny_llava
    wrong = CLIPImageProcessor(size={'shortest_edge': 48},
                               crop_size={'height': 48, 'width': 48})
    col = ConversationCollator(tok, wrong, num_image_tokens=64,
                               image_size=32)
    with pytest.raises(ValueError, match="id='d0'.*48x48.*32x32"):
        col(make_samples(2))


def test_too_long_sample_and_skip(tiny_llava, make_samples):
    _, processor, tok = tiny_llava
    col = ConversationCollator(tok, processor, num_image_tokens=64,
                               image_size=32, max_length=20,
                               system_prompt='')
    with pytest.raises(ValueError, match="id='d0'.*max_length=20"):
        col(make_samples(2))
    samples = make_samples(2) + [dict(id='short', image=None, conversation=[
        ('user', 'Hi'), ('assistant', 'one')])]
    col.skip_bad_samples = True
    batch = col(samples)
    assert batch['sample_ids'] == ['short']


def test_settings_are_validated():
    with pytest.raises(ValueError, match="method='dpo'"):
        MergeMixArguments(method='dpo')
    with pytest.raises(ValueError, match='merge_num=-1'):
        MergeMixArguments(merge_num=-1)
    compat = MergeMixArguments(compat='llava').resolved()
    assert compat.lam_schedule == 'once' and not compat.loser_grad
    assert compat.topk_space == 'merged' and compat.partner == 'randperm'
    assert clip_merge_schedule(64, 2, 48) == [32, 16]
    with pytest.raises(ValueError, match='merge_num=60 cannot be merged'):
        clip_merge_schedule(64, 2, 60)


@pytest.mark.parametrize('kwargs,match', [
    (dict(prompt_only='yes'), "prompt_only='yes'"),
    (dict(skip_bad_samples=1), 'skip_bad_samples=1'),
    (dict(merge_size=0), 'merge_size=0'),
    (dict(merge_size=True), 'merge_size=True'),
])
def test_collator_rejects_bad_flags(tiny_llava, kwargs, match):
    _, processor, tok = tiny_llava
    with pytest.raises((TypeError, ValueError), match=match):
        ConversationCollator(tok, processor, num_image_tokens=64, **kwargs)
