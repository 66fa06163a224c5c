"""Helpers shared by the analysis tests (tiny config, tool loader, PNG
check)."""
import importlib.util
import os.path as osp

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
DEMO = osp.join(ROOT, 'configs', 'demo',
                'vit-tiny_1xb64-mergemix_digits-32px.py')

TINY = """
_base_ = [{demo!r}]
model = dict(
    backbone=dict(
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        patch_size=8, drop_path_rate=0.0),
    head=dict(in_channels=32),
    train_cfg=dict(augments={augments}))
test_dataloader = dict(batch_size=150)
"""

MERGEMIX = ("[dict(type='MergeMix', alpha=1.0, attn_layer=1, merge_num=4, "
            "lam_scale=False)]")


def write_tiny_config(directory, augments=MERGEMIX, name='tiny.py'):
    path = osp.join(str(directory), name)
    with open(path, 'w') as f:
        f.write(TINY.format(demo=DEMO, augments=augments))
    return path


def load_tool(name):
    """Import ``tools/analysis/<name>.py`` under a unique module name."""
    path = osp.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_analysis_tool_{name}',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_png(path):
    assert osp.isfile(path), f'{path} was not written'
    with open(path, 'rb') as f:
        head = f.read(8)
    assert head == b'\x89PNG\r\n\x1a\n', f'{path} is not a PNG'
    import matplotlib.image as mpimg
    pixels = mpimg.imread(path)
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert float(pixels[..., :3].std()) > 0.01, f'{path} is blank'
