"""What a user of ``tools/mllm`` hits: bad data, bad flags, checkpoints."""
import json
import os.path as osp

import pytest

from mergemix_mm.mllm import LlavaConversationDataset

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def _record(sample, image=None):
    rec = dict(id=sample['id'], conversations=[
        {'from': 'human', 'value': sample['conversation'][0][1]},
        {'from': 'gpt', 'value': sample['conversation'][1][1]}])
    if image is not None:
        rec['image'] = image
    return rec


@pytest.fixture
def data(tmp_path, make_samples):
    """(train.json, image folder) with 8 digit records."""
    folder = tmp_path / 'images'
    folder.mkdir()
    records = []
    for s in make_samples(8):
        s['image'].save(folder / f'{s["id"]}.png')
        records.append(_record(s, f'{s["id"]}.png'))
    path = tmp_path / 'train.json'
    path.write_text(json.dumps(records))
    return str(path), str(folder)


def _argv(data, out, *extra):
    path, folder = data
    return ['--data_path', path, '--image_folder', folder, '--output_dir',
            str(out), '--use_cpu', '--report_to', 'none', '--disable_tqdm',
            'true', '--per_device_train_batch_size', '4', '--system_prompt',
            '', *extra]


def test_image_placeholder_in_a_response_names_the_sample(tmp_path, data):
    # It used to pass validation and fail at the first step with a
    # "visual-token budget mismatch" that named neither sample nor cause.
    path, folder = data
    records = json.loads(open(path).read())
    records[2]['conversations'][0]['value'] = 'Which digit is shown?'
    records[2]['conversations'][1]['value'] = '<image>\nseven'
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(records))
    rid = records[2]['id']
    with pytest.raises(ValueError,
                       match=f"id='{rid}'.*response in turn 1.*<image>"):
        LlavaConversationDataset(str(bad), folder)
    ds = LlavaConversationDataset(str(bad), folder, skip_bad_samples=True)
    assert len(ds) == 7 and ds.num_dropped == 1


def test_every_checkpoint_holds_the_image_processor(tmp_path, data, mllm_tool):
    from transformers import AutoProcessor
    out = tmp_path / 'out'
    mllm_tool('train').main(
        _argv(data, out, '--tiny', 'llava', '--merge_num', '16',
              '--max_steps', '1', '--save_steps', '1'))
    ckpt = out / 'checkpoint-1'
    assert osp.exists(ckpt / 'preprocessor_config.json')
    AutoProcessor.from_pretrained(str(ckpt))  # used to raise OSError
    # and training can start again from that checkpoint
    trainer = mllm_tool('train').main(
        _argv(data, tmp_path / 'again', '--model_name_or_path', str(ckpt),
              '--merge_num', '16', '--max_steps', '1', '--save_strategy',
              'no'))
    assert trainer.state.global_step == 1


def test_load_best_model_at_end(tmp_path, data, mllm_tool):
    import torch
    from safetensors.torch import load_file
    out = tmp_path / 'out'
    trainer = mllm_tool('train').main(
        _argv(data, out, '--tiny', 'llava', '--merge_num', '16',
              '--max_steps', '3', '--learning_rate', '0.02',
              '--eval_data_path', data[0], '--eval_strategy', 'steps',
              '--eval_steps', '1', '--save_steps', '1',
              '--load_best_model_at_end', '--metric_for_best_model', 'loss',
              '--greater_is_better', 'true'))
    best = trainer.state.best_model_checkpoint
    assert best is not None
    final = load_file(str(out / 'model.safetensors'))
    kept = load_file(osp.join(best, 'model.safetensors'))
    assert final.keys() == kept.keys()
    assert all(torch.equal(final[k], kept[k]) for k in final)
    if not best.endswith('checkpoint-3'):
        last = load_file(str(out / 'checkpoint-3' / 'model.safetensors'))
        assert any(not torch.equal(final[k], last[k]) for k in final)


@pytest.mark.parametrize('tiny,template,expected', [
    ('qwen2_5_vl', 'vicuna_v1', 'qwen2_5_vl'),
    ('llava', 'qwen2_5_vl', 'vicuna_v1'),
])
def test_template_must_fit_the_model(tmp_path, data, tiny, template,
                                     expected, mllm_tool):
    # It used to fail inside the collator, naming num_image_tokens or
    # image_token (settings the user never gave) instead of --template.
    with pytest.raises(ValueError,
                       match=f"template='{template}' does not fit the "
                       f"{tiny} model; use '{expected}'"):
        mllm_tool('train').main(
            _argv(data, tmp_path / 'out', '--tiny', tiny, '--template',
                  template, '--max_steps', '1', '--save_strategy', 'no'))


@pytest.mark.parametrize('tiny,flags,match', [
    # LLaVA ignored them silently
    ('llava', ['--max_pixels', '1000'], 'max_pixels set the Qwen2.5-VL'),
    # accepted, and the processor then broke the max_pixels budget
    ('qwen2_5_vl', ['--min_pixels', '100000'],
     "min_pixels=100000 exceeds the image processor's longest_edge=2304"),
    ('qwen2_5_vl', ['--min_pixels', '4000', '--max_pixels', '1000'],
     'min_pixels=4000 exceeds max_pixels=1000'),
    ('qwen2_5_vl', ['--max_pixels', '-5'], 'max_pixels=-5 must not be'),
])
def test_pixel_budget_flags_are_checked(tmp_path, data, tiny, flags, match,
                                        mllm_tool):
    out = tmp_path / 'out'
    with pytest.raises(ValueError, match=match):
        mllm_tool('train').main(
            _argv(data, out, '--tiny', tiny, *flags, '--max_steps', '1',
                  '--save_strategy', 'no'))
    assert not out.exists()


def test_bad_torch_dtype_names_the_setting(tmp_path, data, tiny_llava,
                                           mllm_tool):
    model, processor, tok = tiny_llava
    ckpt = tmp_path / 'hf'
    model.save_pretrained(str(ckpt))
    tok.save_pretrained(str(ckpt))
    processor.save_pretrained(str(ckpt))
    # it used to be a raw AttributeError from getattr(torch, ...)
    with pytest.raises(ValueError, match="torch_dtype='float16x'"):
        mllm_tool('train').main(
            _argv(data, tmp_path / 'out', '--model_name_or_path', str(ckpt),
                  '--torch_dtype', 'float16x', '--max_steps', '1'))


def test_qwen_saliency_block_is_checked_when_the_model_is_built(tiny_qwen):
    # It used to be accepted until the first training step.
    from mergemix_mm.mllm import MergeMixArguments, MergeMixVLM
    model, _, _ = tiny_qwen
    with pytest.raises(ValueError, match='qwen_saliency_block=0 is a '
                       'window-attention block'):
        MergeMixVLM(model, MergeMixArguments(qwen_saliency_block=0))
    with pytest.raises(ValueError, match='qwen_saliency_block=9 is out'):
        MergeMixVLM(model, MergeMixArguments(qwen_saliency_block=9))
    MergeMixVLM(model, MergeMixArguments(qwen_saliency_block=1))


def test_demo_digits_bad_img_size_writes_nothing(tmp_path, mllm_tool):
    from mergemix_mm.mllm.digits_demo import export_digits_llava
    out = tmp_path / 'digits'
    with pytest.raises(ValueError, match='img_size=4'):
        export_digits_llava(str(out), 4)
    assert not out.exists()  # the image folder used to be created first
    with pytest.raises(SystemExit) as err:
        mllm_tool('demo_digits').main(
            ['--out', str(out), '--img-size', '0'])
    assert err.value.code == 2 and not out.exists()


@pytest.mark.parametrize('flags,name', [
    (['--torch_dtype', 'bfloat16'], 'torch_dtype'),
    (['--attn_implementation', 'eager'], 'attn_implementation'),
    (['--model_name_or_path', 'llava-1.5-7b-hf'], 'model_name_or_path'),
])
def test_pretrained_model_flags_are_not_ignored_with_tiny(
        tmp_path, data, flags, name, mllm_tool):
    # --tiny used to win silently: a float32 random model was trained.
    with pytest.raises(ValueError, match=f"{name}=.*tiny='llava'"):
        mllm_tool('train').main(
            _argv(data, tmp_path / 'out', '--tiny', 'llava', *flags,
                  '--max_steps', '1', '--save_strategy', 'no'))


def test_other_family_mask_setting_is_not_ignored(tiny_llava, tiny_qwen):
    # Each used to be accepted and silently ignored by the other family.
    from mergemix_mm.mllm import MergeMixArguments, MergeMixVLM
    with pytest.raises(ValueError, match='qwen_saliency_block=1 applies to '
                       'Qwen2.5-VL only'):
        MergeMixVLM(tiny_llava[0], MergeMixArguments(qwen_saliency_block=1))
    with pytest.raises(ValueError, match='attn_layer=1 applies to the LLaVA'):
        MergeMixVLM(tiny_qwen[0], MergeMixArguments(attn_layer=1))
    MergeMixVLM(tiny_llava[0], MergeMixArguments(attn_layer=1))
    # the LLaVA ToMe tower's own settings (Qwen's tower does not merge)
    with pytest.raises(ValueError, match="token_order='raster' applies to "
                       'LLaVA'):
        MergeMixVLM(tiny_qwen[0], MergeMixArguments(token_order='raster'))
    with pytest.raises(ValueError, match='prop_attn=True applies to the '
                       'LLaVA'):
        MergeMixVLM(tiny_qwen[0], MergeMixArguments(prop_attn=True))
    MergeMixVLM(tiny_llava[0], MergeMixArguments(
        merge_num=8, token_order='raster', prop_attn=True))


def test_data_path_folder_and_max_length_name_the_flag(tmp_path, data,
                                                       mllm_tool):
    """A folder as data_path said 'does not exist'; model_max_length 0 was
    reported as the collator's max_length."""
    with pytest.raises(FileNotFoundError, match='is a folder'):
        LlavaConversationDataset(str(tmp_path), None)
    with pytest.raises(ValueError, match='model_max_length=0 must be'):
        mllm_tool('train').main(
            _argv(data, tmp_path / 'out', '--tiny', 'llava',
                  '--model_max_length', '0', '--max_steps', '1'))


def test_tiny_model_follows_the_seed(tmp_path, data, mllm_tool):
    """--tiny built the same random model whatever --seed said."""
    import torch
    tool = mllm_tool('train')
    model_args = tool.ModelArguments(tiny='llava')
    train_set = LlavaConversationDataset(*data)
    weights = []
    for seed in (0, 0, 1):
        model, _, _ = tool.build_model(model_args, None, train_set,
                                       seed=seed)
        weights.append(torch.cat([p.detach().flatten()
                                  for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_accelerate_launcher_without_gpus_refuses_several_processes(
        tmp_path):
    """accelerate ran one process for NUM_PROCS=2, without a word, on a
    machine without GPUs and no config, or with a single-process config
    (here its default config file); a multi-process config goes ahead."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, LAUNCHER='accelerate', CUDA_VISIBLE_DEVICES='',
               PYTHON=sys.executable, HF_HOME=str(tmp_path))
    env.pop('ACCELERATE_CONFIG', None)
    script = osp.join(ROOT, 'tools', 'mllm', 'dist_train.sh')

    def launch():
        return subprocess.run(['bash', script, '2', '--help'], env=env,
                              capture_output=True, text=True, timeout=300)

    proc = launch()
    assert proc.returncode == 2
    assert 'would run a single process (no accelerate config' in proc.stderr
    config = tmp_path / 'accelerate' / 'default_config.yaml'
    config.parent.mkdir()
    config.write_text("compute_environment: LOCAL_MACHINE\n"
                      "distributed_type: 'NO'\nnum_processes: 1\n"
                      'use_cpu: true\n')
    proc = launch()
    assert proc.returncode == 2
    assert 'has distributed_type NO' in proc.stderr
    config.write_text('compute_environment: LOCAL_MACHINE\n'
                      'distributed_type: MULTI_CPU\nnum_processes: 2\n'
                      'use_cpu: true\nmpirun_config: {}\n')
    proc = launch()
    assert 'would run a single process' not in proc.stderr
    assert '--vision_tower_lr' in proc.stdout, proc.stderr[-2000:]


def test_qwen_tower_without_full_attention_block_says_so():
    """The message advised setting qwen_saliency_block, which is then
    refused too: no block can serve."""
    from types import SimpleNamespace

    from mergemix_mm.mllm.tome_qwen import check_qwen_saliency_block
    visual = SimpleNamespace(
        config=SimpleNamespace(fullatt_block_indexes=[]), blocks=[0, 1])
    with pytest.raises(ValueError, match='needs one'):
        check_qwen_saliency_block(visual)
    with pytest.raises(ValueError, match='window-attention block'):
        check_qwen_saliency_block(visual, 1)
