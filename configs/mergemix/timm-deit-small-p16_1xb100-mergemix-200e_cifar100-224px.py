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
    ))

# Everything a result depends on is inherited unchanged from the parent:
# 1 GPU(s) x 100 images per GPU, 200 epochs, lr 0.001 (AdamW, wd 0.05),
# randomness.seed=0.
