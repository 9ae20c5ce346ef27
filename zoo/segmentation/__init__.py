"""Semantic segmentation: shapes images with per-pixel class masks (shape_masks), an FCN with skip connections
(fcn), mean IoU and pixel accuracy from a confusion matrix (confusion_meters), and a PNG of the predicted and
true masks (overlay_png). examples/segmentation_fcn.json trains it from opts,
examples/fit_segmentation.py through Estimator.fit."""

BENCHMARK = {
    "segmentation_fcn": {"opts": "examples/segmentation_fcn.json", "metric": "test_miou", "target": 0.7,
                         "minutes": 10},
}
