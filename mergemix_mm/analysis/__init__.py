"""Analysis helpers behind ``tools/analysis/``: mixed-sample grids,
calibration (ECE, reliability diagrams) and occlusion robustness."""
from .calibration import (CalibrationBin, CalibrationResult, calibration_bins,
                          calibration_from_scores, expected_calibration_error,
                          plot_reliability)
from .loading import (batch_labels, build_loader, build_model,
                      check_checkpoint, class_names_of, config_img_size,
                      load_config,
                      num_classes_of, predict_batches, preprocessed_batches,
                      quiet_logger, resolve_device, settings_schedules)
from .mix_vis import (MixView, augment_repr, denormalize, describe_mix,
                      estimate_partners, label_weights_text, pair_weights_text,
                      plot_mix_grid, plot_mixed_batch)
from .occlusion import (DEFAULT_FRACTIONS, occlude_patches, occlusion_curve,
                        occlusion_patch_size, plot_occlusion,
                        random_patch_mask)

__all__ = [
    'CalibrationBin', 'CalibrationResult', 'calibration_bins',
    'calibration_from_scores', 'expected_calibration_error',
    'plot_reliability', 'batch_labels', 'build_loader', 'build_model',
    'check_checkpoint', 'class_names_of', 'config_img_size', 'load_config',
    'num_classes_of',
    'predict_batches', 'preprocessed_batches', 'quiet_logger',
    'resolve_device', 'settings_schedules', 'MixView',
    'augment_repr', 'denormalize', 'describe_mix', 'estimate_partners',
    'label_weights_text', 'pair_weights_text', 'plot_mix_grid',
    'plot_mixed_batch',
    'DEFAULT_FRACTIONS', 'occlude_patches', 'occlusion_curve',
    'occlusion_patch_size', 'plot_occlusion', 'random_patch_mask'
]
