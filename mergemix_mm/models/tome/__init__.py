"""Functional token merging (ToMe) core: matching, merging, source tracking,
r schedules and ToMe forwards over stock mmpretrain and timm ViTs."""
from .functional import (ToMeOutput, ViTGeometry, check_cls_token,
                         forward_with_attention, vit_geometry, vit_img_size)
from .merge import (Matching, bipartite_soft_matching, head_mean_metric,
                    init_source, merge_source, merge_wavg, recover,
                    recover_patch_grid, reorder_tokens, source_order,
                    source_to_sizes)
from .mmpretrain_vit import tome_vit_forward
from .schedule import (SCHEDULE_COMPATS, check_schedule,
                       openmixup_raw_schedule, parse_r, resolve_schedule,
                       schedule_from_merge_num, schedule_from_setting,
                       search_r)
from .timm_vit import tome_timm_forward

__all__ = [
    'Matching', 'bipartite_soft_matching', 'head_mean_metric', 'init_source',
    'merge_source', 'merge_wavg', 'recover', 'recover_patch_grid',
    'source_to_sizes', 'source_order', 'reorder_tokens', 'parse_r',
    'search_r', 'openmixup_raw_schedule',
    'schedule_from_merge_num', 'schedule_from_setting', 'check_schedule',
    'resolve_schedule', 'SCHEDULE_COMPATS',
    'ToMeOutput', 'ViTGeometry', 'forward_with_attention', 'vit_geometry',
    'tome_vit_forward', 'tome_timm_forward', 'check_cls_token', 'vit_img_size'
]
