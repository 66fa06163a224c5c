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


class _Preprocessor(torch.nn.Module):
    """Returns the batch it is given (as mixed by a batch augment)."""
    num_classes = 3

    def forward(self, data, training=False):
        return data


def test_the_captured_training_batch_is_what_gets_drawn(tmp_path,
                                                        monkeypatch):
    """Through a model wrapper: the training call's output is drawn (not a
    later non-training one), hard labels become one-hot rows, and the
    hook's settings, the dataset's class names and the preprocessor reach
    the plot."""
    from mmpretrain.structures import DataSample

    from mergemix_mm.analysis import mix_vis
    calls = []
    monkeypatch.setattr(mix_vis, 'plot_mixed_batch',
                        lambda *a, **k: calls.append((a, k)))
    model = torch.nn.Module()
    model.data_preprocessor = _Preprocessor()
    runner = SimpleNamespace(
        model=torch.nn.DataParallel(model), iter=4,
        work_dir=str(tmp_path), train_dataloader=SimpleNamespace(
            dataset=SimpleNamespace(metainfo=dict(classes=('a', 'b', 'c')))))
    hook = MixSamplesHook(interval=5, max_images=2, out_dir='figs', bgr=True)
    soft = torch.tensor([0.5, 0.2, 0.3])
    samples = [DataSample().set_gt_score(soft), DataSample().set_gt_label(2)]
    train = torch.rand(2, 3, 4, 4)
    hook.before_train_iter(runner, 4)
    model.data_preprocessor(dict(inputs=train, data_samples=samples), True)
    model.data_preprocessor(dict(inputs=torch.rand(2, 3, 4, 4),
                                 data_samples=samples[::-1]),
                            training=False)
    hook.after_train_iter(runner, 4)
    assert len(calls) == 1
    (mixed, scores, path), kwargs = calls[0]
    assert mixed is train
    torch.testing.assert_close(scores, torch.stack(
        [soft, torch.tensor([0., 0., 1.])]))
    assert path == str(tmp_path / 'figs' / 'iter_5.png')
    assert kwargs['data_preprocessor'] is model.data_preprocessor
    assert kwargs['class_names'] == ['a', 'b', 'c']
    assert kwargs['max_images'] == 2 and kwargs['bgr'] is True
    assert not model.data_preprocessor._forward_hooks
    # an iteration whose preprocessor ran only outside training: no figure
    hook.before_train_iter(runner, 4)
    model.data_preprocessor(dict(inputs=train, data_samples=samples))
    hook.after_train_iter(runner, 4)
    assert len(calls) == 1


def test_plot_draws_the_first_max_images(tmp_path, monkeypatch):
    """10 of 12 grey images on a 2x8 grid (the unused axes left empty),
    each captioned with its own label weights and the class names; the
    colour order is passed on."""
    from mergemix_mm.analysis import mix_vis
    seen, orders = [], []
    monkeypatch.setattr(
        mix_vis, 'label_weights_text',
        lambda s, names=None: seen.append((s.tolist(), names)) or '')
    denormalize = mix_vis.denormalize

    def spy(inputs, data_preprocessor=None, bgr=False):
        orders.append(bgr)
        return denormalize(inputs, data_preprocessor, bgr)

    monkeypatch.setattr(mix_vis, 'denormalize', spy)
    scores = torch.eye(12)[:, :2] + torch.arange(12.)[:, None]
    mix_vis.plot_mixed_batch(torch.rand(12, 1, 8, 8), scores,
                             str(tmp_path / 'x.png'), max_images=10,
                             class_names=['zero', 'a_very_long_name'],
                             bgr=True)
    names = ['zero', 'a_very_long~']  # 12 characters at most
    assert seen == [(s, names) for s in scores[:10].tolist()]
    assert orders == [True]
    assert (tmp_path / 'x.png').exists()


def test_plot_draws_one_channel_images_in_grey(tmp_path):
    from matplotlib.image import imread

    from mergemix_mm.analysis import plot_mixed_batch
    path = str(tmp_path / 'grey.png')
    plot_mixed_batch(torch.rand(2, 1, 8, 8), torch.eye(2), path)
    rgb = torch.from_numpy(imread(path)[..., :3].copy())
    # grey pixels only (a colour map would tint the images)
    assert float((rgb - rgb.mean(-1, keepdim=True)).abs().max()) < 0.02
