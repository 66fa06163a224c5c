_base_ = ['./deit-small-p16_mergemix.py']
model = dict(backbone=dict(arch='l'), head=dict(in_channels=1024))
