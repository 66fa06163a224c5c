"""The code in the docs works as documented."""
import os.path as osp
import re

import torch

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def _python_blocks(name):
    text = open(osp.join(ROOT, 'docs', name)).read()
    return re.findall(r'```python\n(.*?)```', text, re.S)


def test_new_method_example_registers_and_mixes():
    code = _python_blocks('new_method.md')[0]
    scope = {}
    exec(compile(code, 'new_method.md', 'exec'), scope)
    from mmpretrain.registry import BATCH_AUGMENTS
    aug = BATCH_AUGMENTS.build(dict(type='SplitMix', alpha=1.0))
    x = torch.randn(4, 3, 8, 8)
    y = torch.eye(5)[:4]
    from unittest.mock import patch
    with patch('numpy.random.beta', return_value=0.5):
        mixed, scores = aug(x, y)
    torch.testing.assert_close(mixed[..., :4], x[..., :4])
    torch.testing.assert_close(scores.max(1).values, torch.full((4, ), 0.5))
    torch.testing.assert_close(scores.sum(1), torch.ones(4))
    assert not torch.equal(mixed, x)
    BATCH_AUGMENTS._module_dict.pop('SplitMix')


def test_timm_compile_example_is_one_graph(dynamo_graphs):
    """The timm + torch.compile snippet of getting_started.md runs and the
    compiled forward is one graph (recorded by a backend that runs it with
    the stock kernels, so no C++ toolchain is needed)."""
    from unittest.mock import patch
    code = [
        c for c in _python_blocks('getting_started.md')
        if 'torch.compile' in c
    ][0]
    compile_ = torch.compile
    with patch('torch.compile',
               lambda fn, **kw: compile_(fn, backend=dynamo_graphs, **kw)):
        scope = {}
        exec(compile(code, 'getting_started.md', 'exec'), scope)
        assert len(dynamo_graphs.graphs) == 1
        assert scope['feats'].shape == (2, 192)
        assert scope['logits'].shape == (2, 1000)
        x = torch.randn(2, 3, 224, 224)
        with torch.no_grad():
            torch.testing.assert_close(scope['fast'](x),
                                       scope['features'](x))


def test_relative_links_resolve():
    """Every relative link of the README and the guides (docs/, configs/)
    names a file or folder of the repository."""
    import glob
    root = ROOT
    pages = [osp.join(root, 'README.md')]
    for pattern in ('docs/**/*.md', 'configs/**/README.md'):
        pages += glob.glob(osp.join(root, pattern), recursive=True)
    checked, broken = 0, []
    for page in pages:
        text = open(page, encoding='utf-8').read()
        for target in re.findall(r'\]\(([^)\s]+)\)', text):
            if re.match(r'[a-z]+://|#|mailto:', target):
                continue
            path = osp.join(osp.dirname(page), target.split('#')[0])
            checked += 1
            if not osp.exists(path):
                broken.append(f'{osp.relpath(page, root)}: {target}')
    assert checked > 20 and not broken, broken
