from .mix_samples import MixSamplesHook
from .nonfinite_guard import NonFiniteError, NonFiniteGuardHook
from .rng_state import RNGStateHook, get_rng_state, set_rng_state
from .switch_recipe import bind_model_aware_augments, patch_switch_recipe_hook
from .tome_schedule import ToMeScheduleHook

__all__ = [
    'bind_model_aware_augments', 'patch_switch_recipe_hook', 'MixSamplesHook',
    'NonFiniteError',
    'NonFiniteGuardHook', 'RNGStateHook', 'ToMeScheduleHook',
    'get_rng_state', 'set_rng_state'
]
