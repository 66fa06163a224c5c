"""Print the installed versions of the tested stack; ``--check`` compares them
with the tested matrix in README.md (requirements pins) and fails on a
mismatch."""
import argparse
import platform
import sys

TESTED = {
    'torch': '2.14.1',
    'torchvision': '0.29.1',
    'mmengine': '0.10.7',
    'mmpretrain': '1.2.0',
}
PACKAGES = ['torch', 'torchvision', 'mmengine', 'mmcv', 'mmpretrain', 'timm',
            'transformers', 'tokenizers', 'numpy']


def installed_versions() -> dict:
    from importlib import metadata
    versions = {'python': platform.python_version()}
    for name in PACKAGES:
        dist = 'mmcv-lite' if name == 'mmcv' else name
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = 'not installed'
    return versions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        '--check',
        action='store_true',
        help='fail if a pinned package differs from the tested matrix')
    args = parser.parse_args(argv)
    versions = installed_versions()
    for name, ver in versions.items():
        print(f'{name:>13}: {ver}')
    if args.check:
        bad = {k: (versions.get(k), v) for k, v in TESTED.items()
               if not str(versions.get(k, '')).split('+')[0] == v}
        if bad:
            print(f'version mismatch (installed, tested): {bad}',
                  file=sys.stderr)
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
