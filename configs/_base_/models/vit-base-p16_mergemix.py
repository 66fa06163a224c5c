_base_ = ['./deit-small-p16_mergemix.py']
model = dict(backbone=dict(arch='b'), head=dict(in_channels=768))
