# The CPU demo (README command 2) on a timm ViT: ToMeTimmViT builds timm's
# VisionTransformer with the demo's shape (patch 4, 4 blocks of width 96) and
# MergeMix's mask pass merges over timm's own blocks. Everything else is the
# parent's, except the initialisation: timm's (truncated normal, std 0.02)
# trains this tiny from-scratch task much more slowly in 30 epochs, so the
# Linear and Conv layers start as in mmpretrain's ViT (PyTorch's default
# Kaiming-uniform Linear, mmpretrain's Kaiming patch embedding).
_base_ = ['vit-tiny_1xb64-mergemix_digits-32px.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='ToMeTimmViT',
        model_name='vit_tiny_patch16_224',
        img_size=32,
        patch_size=4,
        embed_dim=96,
        depth=4,
        num_heads=4,
        mlp_ratio=4.0,
        drop_path_rate=0.1,
        init_cfg=[
            dict(type='Kaiming', layer='Linear', a=5**0.5, mode='fan_in',
                 nonlinearity='leaky_relu', distribution='uniform'),
            dict(type='Kaiming', layer='Conv2d', mode='fan_in',
                 nonlinearity='linear'),
        ],
    ),
    train_cfg=dict(augments=[
        dict(type='MergeMix', alpha=1.0, attn_layer=2, merge_num=32,
             lam_scale=False, lam_reduction='batch')
    ]))
randomness = dict(seed=0, deterministic=False)
