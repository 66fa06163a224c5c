from .compat import apply_all

__all__ = ['apply_all']
