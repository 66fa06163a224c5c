"""Command-line pieces shared by ``tools/``."""
import argparse

from mmengine.config import DictAction

__all__ = ['CfgOptionsAction']

_CFG_OPTIONS_HELP = (
    'each entry must be KEY=VALUE with a dotted KEY (list items by index, '
    'e.g. model.train_cfg.augments.0.alpha=0.4) and a VALUE that is a '
    'number, bool, None, string or a [list] / (tuple) of them; dicts such as '
    "dict(type='Mixup') cannot be given on the command line: put them in a "
    'child config (docs/configs.md)')


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` (``--cfg-options KEY=VALUE ...``) that turns
    an entry it cannot parse into a usage error naming the entry.

    mmengine's own action fails with ``ValueError: not enough values to
    unpack`` on an entry without ``=`` and recurses until ``RecursionError``
    on a value like ``[dict(type='Mixup',alpha=0.8)]``.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        for kv in values or ():
            key = kv.split('=', 1)[0]
            if '=' not in kv or not key:
                raise argparse.ArgumentError(
                    self, f'{kv!r} is not KEY=VALUE: {_CFG_OPTIONS_HELP}')
            # the parser recurses forever on a call with several arguments
            if 'dict(' in kv.split('=', 1)[1].replace(' ', ''):
                raise argparse.ArgumentError(
                    self, f'cannot parse {kv!r}: {_CFG_OPTIONS_HELP}')
        try:
            super().__call__(parser, namespace, values, option_string)
        except (ValueError, AssertionError, RecursionError) as err:
            raise argparse.ArgumentError(
                self, f'cannot parse {values!r} ({err}): '
                f'{_CFG_OPTIONS_HELP}') from None
