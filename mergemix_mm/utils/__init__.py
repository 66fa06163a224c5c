from .checks import check_bool, check_number
from .compat import apply_all
from .jsonl import read_jsonl

__all__ = ['apply_all', 'check_bool', 'check_number', 'read_jsonl']
