import os.path as osp

from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open(osp.join('mergemix_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(path):
    reqs = []
    with open(path) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line and not line.startswith('-r'):
                reqs.append(line)
    return reqs


setup(
    name='mergemix_mm',
    version=read_version(),
    description='MergeMix (token-merge-guided mixup) for mmpretrain 1.x and '
    'Hugging Face multi-modal LLMs',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools',
                                    'benchmarks')),
    # torch/torchvision are installed first as a matching pair
    # (requirements/torch.txt) and deliberately not listed here.
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={
        'tests': read_requirements('requirements/tests.txt'),
        'mllm': read_requirements('requirements/mllm.txt'),
    },
)
