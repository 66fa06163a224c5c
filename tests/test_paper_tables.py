"""docs/paper_tables.md: every linked config trains the cell it sits in.

Each table of the page sits under a heading naming its dataset and epochs
(and its model where the columns are not models). In a result column (a
model, or ``top-1 (%)``) a cell holds the paper's number and one
``[cfg](...)`` link, or ``(no config)``, or no link in the row of a method
this package does not implement; ``-`` (en dash) where the paper has no
number. The linked file's method, model, dataset, epochs
(``train_cfg.max_epochs``) and augments must be those of its row and
column, a ``(no config)`` cell must really have none, and on the
fine-grained tables the method's augment must draw the row's alpha.
"""
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
PAGE = osp.join(ROOT, 'docs', 'paper_tables.md')

# paper row label -> method name of the config files
METHODS = {
    'Vanilla': 'vanilla', 'MixUp': 'mixup', 'CutMix': 'cutmix',
    'DeiT': 'deit', 'FMix': 'fmix', 'GridMix': 'gridmix',
    'SmoothMix': 'smoothmix', 'ResizeMix': 'resizemix',
    'SaliencyMix': 'saliencymix', 'Attentive-CutMix': 'attentivecutmix',
    'TransMix': 'transmix', 'SMMix': 'smmix', 'MixPro': 'mixpro',
    'TdAttenMix': 'tdattenmix', 'MergeMix': 'mergemix'
}
NOT_IMPLEMENTED = {'PuzzleMix', 'AutoMix', 'AdAutoMix', 'GuidedMix'}
MODELS = {
    'DeiT-T': 'deit-tiny', 'DeiT-S': 'deit-small', 'ViT-S': 'vit-small',
    'ViT-B': 'vit-base', 'ViT-L': 'vit-large'
}
ARCH = {
    'deit-tiny': 'deit-tiny', 'deit-small': 'deit-small', 'vit-small': 's',
    'vit-base': 'b', 'vit-large': 'l'
}
# heading keyword -> (data token of the file names, dataset type, folder)
DATASETS = {
    'CIFAR-100': ('cifar100-224px', 'CIFAR100Local', 'cifar100'),
    'ImageNet': ('in1k', 'ImageNetLocal', 'imagenet'),
    'CUB': ('cub', 'CUBLocal', 'cub'),
    'Aircraft': ('aircraft', 'FGVCAircraftLocal', 'aircraft'),
    'Stanford-Cars': ('stanfordcars', 'StanfordCarsLocal', 'stanfordcars'),
}
# augment types of each method: exactly these, or the main one plus the
# Mixup / CutMix it is paired with
EXACT = {
    'vanilla': set(), 'mixup': {'Mixup'}, 'cutmix': {'CutMix'},
    'deit': {'Mixup', 'CutMix'}
}
MAIN = {
    'fmix': 'FMix', 'gridmix': 'GridMix', 'smoothmix': 'SmoothMix',
    'resizemix': 'ResizeMixTau', 'saliencymix': 'SaliencyMix',
    'attentivecutmix': 'AttentiveCutMix', 'transmix': 'TransMix',
    'smmix': 'SMMix', 'mixpro': 'MixPro', 'tdattenmix': 'TdAttenMix',
    'mergemix': 'MergeMix'
}
NAME = re.compile(r'^(?P<model>deit-tiny|deit-small|vit-small|vit-base|'
                  r'vit-large)(?:-p16)?_\d+xb\d+-(?P<method>[a-z-]+?)'
                  r'(?:-(?P<epochs>\d+)e)?_(?P<data>[a-z0-9-]+)\.py$')
LINK = re.compile(r'\[cfg\]\(([^)\s]+)\)')

_INDEX = {}


def config_index():
    """Every paper-recipe config: path -> (data, model, method, epochs),
    augments, folder; read once."""
    if not _INDEX:
        paths = glob.glob(osp.join(ROOT, 'configs', 'mergemix', '*.py'))
        for _, _, folder in DATASETS.values():
            paths += glob.glob(
                osp.join(ROOT, 'configs', 'baselines', folder, '*.py'))
        for path in sorted(paths):
            _INDEX[osp.normpath(path)] = _describe(path)
    return _INDEX


def _describe(path):
    name = osp.basename(path)
    match = NAME.match(name)
    if match is None:  # e.g. the timm-backbone MergeMix config
        return None
    cfg = Config.fromfile(path, format_python_code=False)
    method = match['method']
    if method == 'mixup-cutmix':  # the DeiT twin of configs/mergemix/
        method = 'deit'
    epochs = cfg.train_cfg.max_epochs
    if match['epochs'] is not None:
        assert int(match['epochs']) == epochs, path
    data = match['data']
    dataset = {d: t for d, t, _ in DATASETS.values()}[data]
    assert cfg.train_dataloader.dataset.type == dataset, path
    assert cfg.model.backbone.arch == ARCH[match['model']], path
    return dict(key=(data, match['model'], method, epochs),
                augments=cfg.model.train_cfg.get('augments', []),
                folder=osp.basename(osp.dirname(path)))


def _split(line):
    return [c.strip() for c in line.strip().strip('|').split('|')]


def page_tables(text):
    """(heading, header, rows) of every table of the page."""
    tables, heading, block = [], None, []
    for line in text.splitlines() + ['']:
        if line.startswith('|'):
            block.append(_split(line))
            continue
        if block:
            tables.append((heading, block[0], block[2:]))
            block = []
        if re.match(r'#{2,} ', line):
            heading = line.lstrip('#').strip()
    return tables


def _table_context(heading):
    """Dataset and epochs named by a table's heading (and its model, if it
    names one)."""
    assert heading, 'a table without a heading'
    found = [v for k, v in DATASETS.items() if k in heading]
    epochs = re.search(r'(\d+) epochs', heading)
    assert len(found) == 1 and epochs, f'heading {heading!r}: no data/epochs'
    model = [v for k, v in MODELS.items() if k in heading]
    return found[0], int(epochs.group(1)), model[0] if model else None


def check_page(text):
    """Check every cell; return (linked, no config, not implemented)."""
    index = config_index()
    counts = [0, 0, 0]
    for heading, header, rows in page_tables(text):
        (data, _, _), epochs, table_model = _table_context(heading)
        cols = {}
        for i, title in enumerate(header):
            if title in MODELS:
                cols[i] = MODELS[title]
            elif title.startswith('top-1'):
                assert table_model, f'{heading}: top-1 column needs a model'
                cols[i] = table_model
        assert cols, f'{heading}: no result column'
        alpha_col = header.index('α') if 'α' in header else None
        for row in rows:
            where = f'{heading} / {row[0]}'
            label = re.match(r'[A-Za-z-]+', row[0]).group(0)
            if label in NOT_IMPLEMENTED:
                assert '(not implemented)' in row[0], where
                assert not LINK.search(' '.join(row)), f'{where}: a link'
                counts[2] += sum(row[i] != '–' for i in cols)
                continue
            assert label in METHODS, f'{where}: unknown method'
            method = METHODS[label]
            for i, model in cols.items():
                cell, at = row[i], f'{where} / {header[i]}'
                links = LINK.findall(cell)
                if cell == '–':
                    continue
                assert re.match(r'\d+\.\d+( |$)', cell), f'{at}: {cell!r}'
                key = (data, model, method, epochs)
                if '(no config)' in cell:
                    assert not links, at
                    there = [p for p, d in index.items() if d and
                             d['key'] == key]
                    assert not there, f'{at}: says no config, has {there}'
                    counts[1] += 1
                    continue
                assert len(links) == 1, f'{at}: {len(links)} links'
                path = osp.normpath(osp.join(osp.dirname(PAGE), links[0]))
                assert path in index and index[path], f'{at}: {links[0]}'
                found = index[path]
                assert found['key'] == key, \
                    f'{at}: {links[0]} trains {found["key"]}, not {key}'
                folder = 'mergemix' if method == 'mergemix' else [
                    f for d, _, f in DATASETS.values() if d == data][0]
                assert found['folder'] == folder, f'{at}: {links[0]}'
                _check_augments(found['augments'], method, at)
                if alpha_col is not None and row[alpha_col] != '–':
                    _check_alpha(found['augments'], method,
                                 float(row[alpha_col]), at)
                counts[0] += 1
    return counts


def _check_augments(augments, method, at):
    types = {a['type'] for a in augments}
    if method in EXACT:
        assert types == EXACT[method], f'{at}: augments {types}'
    else:
        assert MAIN[method] in types, f'{at}: augments {types}'
        assert types <= {MAIN[method], 'Mixup', 'CutMix'}, f'{at}: {types}'


def _check_alpha(augments, method, alpha, at):
    if method == 'deit':
        drawn = [a['alpha'] for a in augments]
    else:
        main = MAIN.get(method) or next(iter(EXACT[method]))
        drawn = [a.get('alpha') for a in augments if a['type'] == main]
    drawn = [a for a in drawn if a is not None]  # e.g. SMMix draws no Beta
    assert all(a == alpha for a in drawn), f'{at}: alpha {drawn} != {alpha}'


def test_every_cell_links_the_config_that_trains_it():
    linked, no_config, not_implemented = check_page(open(PAGE).read())
    # Tables 1/A1 (200 + 600 epochs), 3, 2/A2 as on the page
    assert (linked, no_config, not_implemented) == (207, 0, 36)


def test_a_link_in_the_wrong_cell_fails():
    text = open(PAGE).read()
    right = 'deit-tiny_1xb100-mixup-600e_cifar100-224px.py'
    assert right in text
    for wrong in ('deit-tiny_1xb100-mixup_cifar100-224px.py',  # epochs
                  'deit-tiny_1xb100-cutmix-600e_cifar100-224px.py',  # method
                  'vit-small_1xb100-mixup-600e_cifar100-224px.py'):  # model
        with pytest.raises(AssertionError, match='trains'):
            check_page(text.replace(right, wrong, 1))
    with pytest.raises(AssertionError, match='says no config'):
        check_page(text.replace(
            f'73.06 [cfg](../configs/baselines/cifar100/{right})',
            '73.06 (no config)', 1))
