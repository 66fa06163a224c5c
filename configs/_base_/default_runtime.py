# Runtime defaults (adapted from mmpretrain 1.2.0
# configs/_base_/default_runtime.py,
# Apache-2.0). Own copy: no `mmpretrain::` bases (needs pkg_resources, see
# docs).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mergemix_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # Reliability (docs/reliability.md): stop on a NaN/Inf loss or input,
    # naming the iteration and samples (action='skip' skips such steps);
    # keep the random generators' states in checkpoints for exact resumes.
    nonfinite_guard=dict(type='NonFiniteGuardHook', action='raise'),
    rng_state=dict(type='RNGStateHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # nccl on GPUs; mergemix_mm switches to gloo automatically without CUDA.
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
# Fixed seed by default; every leaf config also states its own.
randomness = dict(seed=0, deterministic=False)
