_base_ = ['deit-small-p16_1xb100-mergemix-200e_cifar100-224px.py']
# The MergeMix recipe of the parent on timm's DeiT-S: ToMeTimmViT builds the
# model with timm.create_model and merges tokens over timm's own blocks (ToMe
# 98 in the mask pass and in the training / test forwards, as the parent).
# pretrained=True loads timm's ImageNet weights (needs the Hugging Face hub or
# its local cache); False trains from scratch as the parent does.
model = dict(
    backbone=dict(
        _delete_=True,
        type='ToMeTimmViT',
        model_name='deit_small_patch16_224',
        pretrained=False,
        drop_path_rate=0.1,
        merge_num=98,
    ),
    train_cfg=dict(augments=[
        dict(type='MergeMix', alpha=1.0, attn_layer=8, merge_num=98,
             lam_scale=True, lam_reduction='batch', lam_margin=-1.0)
    ]))

# Everything a result depends on, in this file (the parent's values):
# MergeMix alpha 1.0 at block 8 with merge 98, 1 GPU(s) x 100 images per GPU,
# 200 epochs, lr 0.001 (AdamW, wd 0.05).
train_dataloader = dict(batch_size=100)
optim_wrapper = dict(optimizer=dict(lr=0.001))
train_cfg = dict(by_epoch=True, max_epochs=200)
auto_scale_lr = dict(base_batch_size=100)
randomness = dict(seed=0, deterministic=False)
