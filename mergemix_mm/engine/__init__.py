from .switch_recipe import bind_model_aware_augments, patch_switch_recipe_hook

__all__ = ['bind_model_aware_augments', 'patch_switch_recipe_hook']
