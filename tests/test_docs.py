"""The code in docs/new_method.md works as documented."""
import os.path as osp
import re

import torch

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def test_new_method_example_registers_and_mixes():
    text = open(osp.join(ROOT, 'docs', 'new_method.md')).read()
    code = re.findall(r'```python\n(.*?)```', text, re.S)[0]
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
