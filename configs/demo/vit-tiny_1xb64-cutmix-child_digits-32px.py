# Swap an augment by inheritance: the MergeMix demo with mmpretrain's CutMix.
# `_base_` paths are resolved relative to *this file's folder* (mmengine), so
# a child config elsewhere needs the matching relative path, e.g.
# '../../configs/demo/vit-tiny_1xb64-mergemix_digits-32px.py'.
_base_ = ['vit-tiny_1xb64-mergemix_digits-32px.py']
# `augments` is a list, so it is replaced as a whole (lists are not merged).
model = dict(train_cfg=dict(augments=[dict(type='CutMix', alpha=1.0)]))
