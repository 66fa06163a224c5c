"""MixSamplesHook: PNGs of the mixed training batch, training unchanged."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.runner import Runner

from mergemix_mm.engine import MixSamplesHook


def _train(cfg, hooks):
    cfg.custom_hooks = hooks
    runner = Runner.from_cfg(cfg)
    runner.train()
    return {k: v.detach().clone() for k, v in
            runner.model.state_dict().items()}


def test_figures_are_written_and_training_is_unchanged(tmp_path,
                                                       short_demo_cfg):
    plain = _train(short_demo_cfg(tmp_path / 'plain'), [])
    hooked = _train(short_demo_cfg(tmp_path / 'hooked'), [
        dict(type='MixSamplesHook', interval=2, max_images=3)])
    assert plain.keys() == hooked.keys()
    assert all(torch.equal(plain[k], hooked[k]) for k in plain)
    out = tmp_path / 'hooked' / 'mix_samples'
    assert sorted(p.name for p in out.iterdir()) == ['iter_2.png']
    assert (out / 'iter_2.png').stat().st_size > 1000
    assert not (tmp_path / 'plain' / 'mix_samples').exists()


def test_plot_draws_soft_labels(tmp_path, monkeypatch):
    """The figure's captions are the top label weights of each image."""
    from mergemix_mm.analysis import mix_vis
    seen = []
    monkeypatch.setattr(mix_vis, 'label_weights_text',
                        lambda s, names=None: seen.append(s.tolist()) or '')
    scores = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    mix_vis.plot_mixed_batch(torch.rand(2, 3, 8, 8), scores,
                             str(tmp_path / 'x.png'))
    assert seen == scores.tolist()
    assert (tmp_path / 'x.png').exists()


@pytest.mark.parametrize('kwargs,match', [
    (dict(interval=0), 'interval'),
    (dict(max_images=0), 'max_images'),
    (dict(out_dir=''), 'out_dir'),
    (dict(bgr='yes'), 'bgr'),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        MixSamplesHook(**kwargs)


def test_capture_is_removed_after_a_failed_iteration():
    """An iteration that raised left its forward hook on the
    preprocessor; the next iteration (or the end of training) removes it."""
    preprocessor = torch.nn.Identity()
    runner = SimpleNamespace(model=SimpleNamespace(
        data_preprocessor=preprocessor), iter=0)
    hook = MixSamplesHook(interval=1)
    hook.before_train_iter(runner, 0)
    assert len(preprocessor._forward_hooks) == 1
    hook.before_train_iter(runner, 0)  # the previous iteration raised
    assert len(preprocessor._forward_hooks) == 1
    hook.after_train(runner)
    assert not preprocessor._forward_hooks


def test_drawing_leaves_pyplot_alone(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    from mergemix_mm.analysis import plot_mixed_batch
    before = matplotlib.get_backend()
    plt.switch_backend('pdf')  # a user's own (non-Agg) backend
    try:
        fig = plt.figure()
        plot_mixed_batch(torch.rand(2, 3, 8, 8), torch.eye(2),
                         str(tmp_path / 'x.png'))
        assert matplotlib.get_backend() == 'pdf'
        assert plt.fignum_exists(fig.number)
        plt.close(fig)
    finally:
        plt.switch_backend(before)
