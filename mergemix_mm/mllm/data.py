"""LLaVA conversation data (the ``llava_v1_5_mix665k.json`` shape).

Each record is ``{"id": ..., "image": "relative/path.jpg" (optional),
"conversations": [{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", "value": "..."}, ...]}``. Records without ``image`` are
text-only. ``.json`` (a list) and ``.jsonl`` (one record per line) files are
read.

Every record is validated when the dataset is built, and a bad record raises
a ``ValueError`` naming the record (index and id) and the problem: a missing
image file, an empty response, a conversation that does not alternate
human/gpt, ``<image>`` without an image, ``<image>`` in a response or more
than one ``<image>``. With ``skip_bad_samples=True`` bad records are dropped
instead, each with a logged warning, and an image that fails to load later is
replaced by the next good record (again with a warning) -- a bad sample never
ends a long run silently, and is only skipped when the user opted in.
"""
import json
import logging
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

from mmengine.logging import print_log
from torch.utils.data import Dataset

from ..utils.checks import check_bool
from ..utils.jsonl import read_jsonl

__all__ = ['IMAGE_PLACEHOLDER', 'LlavaConversationDataset',
           'validate_record', 'load_records']

#: Placeholder of the image inside a human turn.
IMAGE_PLACEHOLDER = '<image>'

_ROLES = {'human': 'user', 'user': 'user', 'gpt': 'assistant',
          'assistant': 'assistant'}


def load_records(path: str) -> List[Dict[str, Any]]:
    """Read a LLaVA ``.json`` list or a ``.jsonl`` file.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file (or a JSONL line) is not valid JSON, naming
            the file (and the line), or if it is not a list of records.
    """
    if osp.isdir(path):
        raise FileNotFoundError(
            f'data_path={path!r} is a folder; give the .json / .jsonl file '
            '(images go in image_folder)')
    if not osp.isfile(path):
        raise FileNotFoundError(f'data_path={path!r} does not exist')
    if path.endswith('.jsonl'):
        records = read_jsonl(path, name='data_path')
    else:
        with open(path, encoding='utf-8') as f:
            try:
                records = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f'data_path={path!r} is not valid JSON: '
                                 f'{err}') from err
    if not isinstance(records, list):
        raise ValueError(f'data_path={path!r} must hold a JSON list of '
                         f'records, got {type(records).__name__}')
    return records


def _name(index: int, record: Any) -> str:
    rid = record.get('id', '?') if isinstance(record, dict) else '?'
    return f'sample #{index} (id={rid!r})'


def validate_record(index: int, record: Any,
                    image_folder: Optional[str]) -> Tuple[Optional[str],
                                                          List[Tuple[str,
                                                                     str]]]:
    """Check one record and normalise it.

    Args:
        index (int): Position in the file (for messages).
        record (Any): The parsed record.
        image_folder (str, optional): Root of relative image paths.

    Returns:
        tuple: ``(image_path or None, [(role, text), ...])`` with roles
        ``'user'`` / ``'assistant'``; the image placeholder is put at the
        start of the first user turn if the record has an image but no
        placeholder (as LLaVA does).

    Raises:
        ValueError: With a message naming the sample and the problem.
    """
    name = _name(index, record)
    if not isinstance(record, dict):
        raise ValueError(f'{name}: a record must be a JSON object')
    conv = record.get('conversations')
    if not isinstance(conv, list) or not conv:
        raise ValueError(f'{name}: "conversations" must be a non-empty list')
    turns = []
    for t, turn in enumerate(conv):
        if not isinstance(turn, dict) or turn.get('from') not in _ROLES:
            raise ValueError(f'{name}: turn {t} must have "from" in '
                             f'{sorted(_ROLES)}')
        value = turn.get('value')
        if not isinstance(value, str):
            raise ValueError(f'{name}: turn {t} has no text "value"')
        role = _ROLES[turn['from']]
        expected = 'user' if t % 2 == 0 else 'assistant'
        if role != expected:
            raise ValueError(
                f'{name}: turn {t} is from {turn["from"]!r} but turns must '
                'alternate human, gpt, human, gpt, ...')
        if role == 'assistant' and not value.strip():
            raise ValueError(f'{name}: the response in turn {t} is empty')
        if role == 'assistant' and IMAGE_PLACEHOLDER in value:
            raise ValueError(f'{name}: the response in turn {t} contains '
                             f'{IMAGE_PLACEHOLDER}; the image placeholder '
                             'belongs in a human turn')
        turns.append((role, value))
    if turns[-1][0] != 'assistant':
        raise ValueError(f'{name}: the conversation ends with a human turn '
                         'that has no response')
    n_placeholders = sum(text.count(IMAGE_PLACEHOLDER) for _, text in turns)
    image = record.get('image')
    if isinstance(image, list):
        if len(image) != 1:
            raise ValueError(f'{name}: {len(image)} images; only one image '
                             'per sample is supported')
        image = image[0]
    if image is None:
        if n_placeholders:
            raise ValueError(f'{name}: the text has {IMAGE_PLACEHOLDER} but '
                             'the record has no "image"')
        return None, turns
    if not isinstance(image, str) or not image:
        raise ValueError(f'{name}: "image" must be a file path')
    if n_placeholders > 1:
        raise ValueError(f'{name}: {n_placeholders} {IMAGE_PLACEHOLDER} '
                         'placeholders; only one image per sample is '
                         'supported')
    if n_placeholders == 0:
        turns[0] = ('user', f'{IMAGE_PLACEHOLDER}\n{turns[0][1]}')
    path = image if image_folder is None else osp.join(image_folder, image)
    if not osp.isfile(path):
        raise ValueError(f'{name}: image file {path!r} does not exist '
                         f'(image_folder={image_folder!r})')
    return path, turns


class LlavaConversationDataset(Dataset):
    """LLaVA-format conversations with an image folder.

    Items are dicts ``{'id', 'image' (PIL.Image or None),
    'conversation' ([(role, text), ...])}``; the collator tokenizes them.

    Args:
        data_path (str): ``.json`` list or ``.jsonl`` file.
        image_folder (str, optional): Root of relative image paths.
            Defaults to None.
        skip_bad_samples (bool): Drop invalid records and replace unreadable
            images with the next record, with a logged warning, instead of
            raising. Defaults to False.
        max_warnings (int): Bad records reported one by one before only a
            count is logged. Defaults to 20.
    """

    def __init__(self,
                 data_path: str,
                 image_folder: Optional[str] = None,
                 skip_bad_samples: bool = False,
                 max_warnings: int = 20):
        check_bool('LlavaConversationDataset', 'skip_bad_samples',
                   skip_bad_samples)
        if isinstance(max_warnings, bool) or not isinstance(
                max_warnings, int) or max_warnings < 0:
            raise ValueError(f'max_warnings={max_warnings!r} must be an int '
                             '>= 0')
        if image_folder is not None and not osp.isdir(image_folder):
            raise ValueError(f'image_folder={image_folder!r} is not a '
                             'directory')
        self.data_path = data_path
        self.image_folder = image_folder
        self.skip_bad_samples = skip_bad_samples
        self.items = []
        dropped = 0
        for i, record in enumerate(load_records(data_path)):
            try:
                path, turns = validate_record(i, record, image_folder)
            except ValueError as err:
                if not skip_bad_samples:
                    raise ValueError(
                        f'{data_path}: {err}. Fix the record or pass '
                        'skip_bad_samples=True to drop bad records with a '
                        'warning.') from None
                dropped += 1
                if dropped <= max_warnings:
                    print_log(f'skipping bad record: {err}', logger='current',
                              level=logging.WARNING)
                continue
            rid = record.get('id', str(i))
            self.items.append(dict(index=i, id=str(rid), image=path,
                                   conversation=turns))
        self.num_dropped = dropped
        if dropped:
            print_log(
                f'{data_path}: dropped {dropped} bad record(s) '
                '(skip_bad_samples=True).',
                logger='current',
                level=logging.WARNING)
        if not self.items:
            raise ValueError(f'{data_path}: no usable record')

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, item: dict) -> dict:
        image = None
        if item['image'] is not None:
            from PIL import Image
            try:
                with Image.open(item['image']) as img:
                    image = img.convert('RGB')
            except Exception as err:  # noqa: BLE001 - reported with context
                raise ValueError(
                    f'sample #{item["index"]} (id={item["id"]!r}): cannot '
                    f'read image {item["image"]!r}: {err}') from err
        return dict(id=item['id'], image=image,
                    conversation=item['conversation'])

    def __getitem__(self, idx: int) -> dict:
        if not self.skip_bad_samples:
            return self._load(self.items[idx])
        for attempt in range(len(self.items)):
            item = self.items[(idx + attempt) % len(self.items)]
            try:
                return self._load(item)
            except ValueError as err:
                print_log(f'{err}; using the next sample instead '
                          '(skip_bad_samples=True).', logger='current',
                          level=logging.WARNING)
        raise ValueError(f'{self.data_path}: no sample could be loaded')
