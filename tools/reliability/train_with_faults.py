"""``tools/train.py`` with fault injection, for the reliability tests.

Same arguments as ``tools/train.py``. Two environment variables add hooks:

* ``MERGEMIX_FAULTS``: JSON arguments of
  :class:`~tools.reliability.instruments.FaultInjectionHook`, e.g.
  ``{"kill_in_save": 2}`` or ``{"raise_at_iter": 3, "raise_rank": 1}``.
* ``MERGEMIX_RECORD``: a directory; every rank writes its per-iteration
  losses there (:class:`~tools.reliability.instruments.LossRecorderHook`).
* ``MERGEMIX_MIX_SEED``: re-seed the generators after the model is built
  (:class:`~tools.reliability.instruments.ReseedHook`).

``MERGEMIX_UNSAFE_CHECKPOINTS=1`` switches the crash-safe checkpoint patches
off again (mmengine's own save and resume), to show what they fix.

Example::

    MERGEMIX_FAULTS='{"kill_at_iter": 5}' python \\
        tools/reliability/train_with_faults.py CONFIG --work-dir DIR
"""
import importlib.util
import json
import os
import os.path as osp
import sys

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.abspath(osp.join(HERE, '..', '..'))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)


def _load_train_module():
    spec = importlib.util.spec_from_file_location(
        'mergemix_train_tool', osp.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unsafe_checkpoints() -> None:
    import mmengine.runner as runner_pkg
    import mmengine.runner.checkpoint as ckpt_mod
    import mmengine.runner.runner as runner_mod
    from mmengine.runner import Runner

    from mergemix_mm.utils import checkpoint_safety as cs
    for module in (ckpt_mod, runner_mod, runner_pkg):
        module.save_checkpoint = cs._ORIGINAL['save']
    Runner.load_or_resume = cs._ORIGINAL['load_or_resume']


def main(argv=None):
    train = _load_train_module()
    import instruments  # noqa: F401  (registers the hooks)
    from mmengine.config import Config
    from mmengine.runner import Runner

    if os.environ.get('MERGEMIX_UNSAFE_CHECKPOINTS') == '1':
        _unsafe_checkpoints()
    args = train.parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = train.merge_args(cfg, args)
    hooks = list(cfg.get('custom_hooks', None) or [])
    faults = os.environ.get('MERGEMIX_FAULTS')
    if faults:
        hooks.append(dict(type='FaultInjectionHook', **json.loads(faults)))
    record = os.environ.get('MERGEMIX_RECORD')
    if record:
        hooks.append(dict(type='LossRecorderHook', out_dir=record))
    mix_seed = os.environ.get('MERGEMIX_MIX_SEED')
    if mix_seed:
        hooks.append(dict(type='ReseedHook', seed=int(mix_seed)))
    cfg.custom_hooks = hooks
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


if __name__ == '__main__':
    main()
