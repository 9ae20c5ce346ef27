"""Image classification, AlexNet style: a small AlexNet-like CNN on the shapes dataset (resnetdemo/shapes.py),
rendered in memory from a seed; cross-entropy; top-1 accuracy."""

BENCHMARK = {
    "alexnet_shapes": {"opts": "examples/alexnet_shapes.json", "metric": "test_accuracy_top1", "target": 0.95,
                       "minutes": 3},
}
