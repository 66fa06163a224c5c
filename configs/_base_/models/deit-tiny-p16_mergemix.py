_base_ = ['./deit-small-p16_mergemix.py']
model = dict(backbone=dict(arch='deit-tiny'), head=dict(in_channels=192))
