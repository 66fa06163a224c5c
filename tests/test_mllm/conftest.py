"""Shared tiny fixtures for the MLLM tests (everything built locally)."""
import numpy as np
import pytest
import torch
from PIL import Image

WORDS = 'zero one two three four five six seven eight nine'.split()
QUESTION = 'Which digit is shown?'


def digit_samples(n=8, start=0, with_text_only=False):
    """LLaVA-style samples from the embedded digits (32 px RGB)."""
    from mergemix_mm.datasets import load_digits_images
    imgs, labels = load_digits_images('train', 32)
    samples = [
        dict(id=f'd{i}', image=Image.fromarray(imgs[i]),
             conversation=[('user', f'<image>\n{QUESTION}'),
                           ('assistant', WORDS[labels[i]])])
        for i in range(start, start + n)
    ]
    if with_text_only:
        samples.insert(1, dict(id='text0', image=None,
                               conversation=[('user', 'Say one.'),
                                             ('assistant', 'one')]))
    return samples


def random_images(n, size=32, seed=0):
    rng = np.random.RandomState(seed)
    return [Image.fromarray((rng.rand(size, size, 3) * 255).astype('uint8'))
            for _ in range(n)]


@pytest.fixture(scope='module', autouse=True)
def _single_thread():
    """The tiny models gain nothing from intra-op threads, and on a shared
    2-core machine two threads per op are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='session')
def llava_tokenizer():
    from mergemix_mm.mllm import train_tiny_tokenizer
    corpus = [f'USER: {QUESTION} ASSISTANT: {w}' for w in WORDS] * 10
    corpus += ['Say one. one two']
    return train_tiny_tokenizer(corpus, vocab_size=320)


@pytest.fixture(scope='session')
def qwen_tokenizer():
    from mergemix_mm.mllm import train_tiny_tokenizer
    corpus = [f'user\n{QUESTION} assistant\n{w}' for w in WORDS] * 10
    corpus += ['system\nYou are a helpful assistant.']
    return train_tiny_tokenizer(corpus, vocab_size=320, template='qwen2_5_vl')


@pytest.fixture
def tiny_llava(llava_tokenizer):
    """(model, image_processor, tokenizer) -- a fresh random LLaVA."""
    from mergemix_mm.mllm import build_tiny_llava
    model, processor = build_tiny_llava(llava_tokenizer, vision_layers=3)
    return model, processor, llava_tokenizer


@pytest.fixture
def tiny_qwen(qwen_tokenizer):
    """(model, image_processor, tokenizer) -- a fresh random Qwen2.5-VL."""
    from mergemix_mm.mllm import build_tiny_qwen2_5_vl
    model, processor = build_tiny_qwen2_5_vl(qwen_tokenizer)
    return model, processor, qwen_tokenizer


def llava_batch(wrapper, processor, tokenizer, samples):
    from mergemix_mm.mllm import ConversationCollator
    collator = ConversationCollator(
        tokenizer, processor, num_image_tokens=wrapper.num_visual_tokens(),
        image_size=32, system_prompt='')
    return collator(samples)


@pytest.fixture(scope='session')
def make_samples():
    """``make_samples(n, start=0, with_text_only=False)`` -> digit samples."""
    return digit_samples


@pytest.fixture(scope='session')
def make_llava_batch():
    """``make_llava_batch(wrapper, processor, tokenizer, samples)``."""
    return llava_batch


@pytest.fixture
def mllm_tool():
    """``mllm_tool(name)`` -> the module ``tools/mllm/<name>.py`` (loaded
    by path, as a user runs it)."""
    import importlib.util
    import os.path as osp
    root = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))

    def load(name):
        path = osp.join(root, 'tools', 'mllm', f'{name}.py')
        spec = importlib.util.spec_from_file_location(f'_mllm_tool_{name}',
                                                      path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
