"""tools/mllm/train.py end to end on a tiny random LLaVA (CPU)."""
import json
import os.path as osp

import pytest
import torch

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


@pytest.fixture
def digits_json(tmp_path, make_samples):
    folder = tmp_path / 'images'
    folder.mkdir()
    records = []
    for s in make_samples(8, with_text_only=True):
        rec = dict(id=s['id'], conversations=[
            {'from': 'human', 'value': s['conversation'][0][1]},
            {'from': 'gpt', 'value': s['conversation'][1][1]}])
        if s['image'] is not None:
            s['image'].save(folder / f'{s["id"]}.png')
            rec['image'] = f'{s["id"]}.png'
        records.append(rec)
    path = tmp_path / 'train.json'
    path.write_text(json.dumps(records))
    return str(path), str(folder)


@pytest.mark.parametrize('tiny', ['llava', 'qwen2_5_vl'])
def test_train_cli_runs_and_saves(tmp_path, digits_json, tiny, mllm_tool):
    from transformers import AutoModelForImageTextToText
    data, folder = digits_json
    out = tmp_path / 'out'
    argv = ['--tiny', tiny, '--data_path', data, '--image_folder', folder,
            '--output_dir', str(out), '--max_steps', '2',
            '--per_device_train_batch_size', '4', '--use_cpu',
            '--report_to', 'none', '--save_strategy', 'no',
            '--disable_tqdm', 'true', '--system_prompt', '']
    if tiny == 'llava':
        argv += ['--merge_num', '16']
    trainer = mllm_tool('train').main(argv)
    assert trainer.state.global_step == 2
    model = AutoModelForImageTextToText.from_pretrained(str(out))
    assert model.config.model_type == tiny
    assert osp.exists(out / 'preprocessor_config.json')


def test_train_cli_bad_setting(tmp_path, digits_json, mllm_tool):
    data, folder = digits_json
    with pytest.raises(ValueError, match='beta=0.0'):
        mllm_tool('train').main([
            '--tiny', 'llava', '--data_path', data, '--image_folder', folder,
            '--output_dir', str(tmp_path), '--beta', '0', '--use_cpu'])


def test_gradient_checkpointing_is_exact(tiny_llava, make_samples,
                                         make_llava_batch):
    from mergemix_mm.mllm import MergeMixArguments, MergeMixVLM
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments(merge_num=16)).train()
    batch = make_llava_batch(wrapper, processor, tok, make_samples(4))
    grads = []
    for ckpt in (True, False):
        if ckpt:
            wrapper.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={'use_reentrant': False})
        else:
            wrapper.gradient_checkpointing_disable()
        torch.manual_seed(0)
        wrapper(**batch, lam=0.4).loss.backward()
        p = model.model.vision_tower.embeddings.patch_embedding.weight
        grads.append(p.grad.clone())
        model.zero_grad()
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
