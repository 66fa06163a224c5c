from .checks import check_bool, check_number
from .compat import apply_all

__all__ = ['apply_all', 'check_bool', 'check_number']
