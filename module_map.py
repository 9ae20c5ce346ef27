"""Every component an opts file can name, by slot (see playground/slots.py). Add a line to make one available.

Values are import paths: a module, or `module.Attribute` for the class slots (meter, handler). A `module_map.py`
of your own in the working folder, the modules listed in `model.module_maps`, and the maps installed packages
register in the `playground.components` entry-point group add names in the same shape;
they never hide these, and a name defined twice is an error naming both maps. Opts may also name a component
by its dotted import path directly.
"""
MODULE_MAP: dict[str, dict[str, str]] = {
    "input": {
        "synthetic_input": "playground.builtins.synthetic_input",
        "gfs_IN1k": "resnetdemo.lmdb_input",
        "lmdb_input": "resnetdemo.lmdb_input",
        # the model zoo (zoo/<task>/)
        "shapes_images": "zoo.classification.shapes_input",
        "tabular_rows": "zoo.tabular.tabular_input",
        "sentiment_sentences": "zoo.text.text_input",
        "shape_scenes_input": "zoo.detection.shape_scenes_input",
        "shape_masks_input": "zoo.segmentation.shape_masks_input",
        "dates_input": "zoo.seq2seq.dates_input",
    },
    "model": {
        "classification_model": "playground.builtins.classification_model",
        "IN1k_resnet": "resnetdemo.IN1k_resnet",
        # the model zoo (zoo/<task>/)
        "detection_model": "zoo.detection.detection_model",
        "seq2seq_model": "zoo.seq2seq.seq2seq_model",
    },
    "forward_pass": {
        "mlp_forward": "playground.builtins.mlp_forward",
        "explicit_resnet_forward": "resnetdemo.explicit_resnet_forward",
        "caffe2_resnet50_default_forward": "resnetdemo.caffe2_resnet50_default_forward",
        # the model zoo (zoo/<task>/)
        "alexnet_style_forward": "zoo.classification.alexnet_style_forward",
        "logistic_regression_forward": "zoo.tabular.logistic_regression_forward",
        "text_classifier_forward": "zoo.text.text_classifier_forward",
        "ssd_forward": "zoo.detection.ssd_forward",
        "fcn_forward": "zoo.segmentation.fcn_forward",
        "seq2seq_forward": "zoo.seq2seq.seq2seq_forward",
    },
    "parameter_update": {  # model.parameter_update_py, or model.optimizer_py
        "sgd_param_update": "playground.builtins.sgd_param_update",
        "torch_recipe": "playground.builtins.torch_recipe",
        "explicit_resnet_param_update": "resnetdemo.explicit_resnet_param_update",
        "caffe2_resnet50_default_param_update": "resnetdemo.explicit_resnet_param_update",  # the seed's name
    },
    "rendezvous": {
        "rendezvous_filestore": "playground.builtins.rendezvous_filestore",
        "rendezvous_tcp": "playground.builtins.rendezvous_tcp",
    },
    "override": {
        "override_no_test_model_no_checkpoint": "playground.builtins.override_no_test_model_no_checkpoint",
        "override_test_only": "playground.builtins.override_test_only",
    },
    "output": {
        "output_generator": "playground.builtins.output_generator",
    },
    "checkpoint_path": {
        "gen_checkpoint_path": "playground.builtins.gen_checkpoint_path",
    },
    "meter": {
        "ComputeLoss": "playground.meters.ComputeLoss",
        "ComputeTopKAccuracy": "playground.meters.ComputeTopKAccuracy",
        "TorchMetric": "playground.meters.TorchMetric",
        # the model zoo (zoo/<task>/)
        "DetectionMAP": "zoo.detection.coco_map.DetectionMAP",
        "MeanIoU": "zoo.segmentation.confusion_meters.MeanIoU",
        "PixelAccuracy": "zoo.segmentation.confusion_meters.PixelAccuracy",
        "SequenceExactMatch": "zoo.seq2seq.sequence_meters.SequenceExactMatch",
        "TokenAccuracy": "zoo.seq2seq.sequence_meters.TokenAccuracy",
    },
    "handler": {
        "BestCheckpoint": "playground.handlers.BestCheckpoint",
        "DumpGraph": "playground.handlers.DumpGraph",
        "EarlyStopping": "playground.handlers.EarlyStopping",
        "EMA": "playground.handlers.EMA",
        "LRMonitor": "playground.handlers.LRMonitor",
        "LogReport": "playground.handlers.LogReport",
        "MLflowLogger": "playground.handlers.MLflowLogger",
        "ModelStatistics": "playground.handlers.ModelStatistics",
        "PrintReport": "playground.handlers.PrintReport",
        "Profiler": "playground.handlers.Profiler",
        "ProgressBar": "playground.handlers.ProgressBar",
        "Recorder": "playground.lab.Recorder",
        "TerminateOnNaN": "playground.handlers.TerminateOnNaN",
        "WandbLogger": "playground.handlers.WandbLogger",
        # the model zoo (zoo/<task>/)
        "PredictionsPng": "zoo.classification.predictions_png.PredictionsPng",
        "BayesOptimal": "zoo.tabular.bayes_optimal.BayesOptimal",
        "TokenSaliencyPng": "zoo.text.saliency_png.TokenSaliencyPng",
        "DrawDetections": "zoo.detection.detections_png.DrawDetections",
        "SegmentationOverlay": "zoo.segmentation.overlay_png.SegmentationOverlay",
        "AttentionHeatmap": "zoo.seq2seq.attention_png.AttentionHeatmap",
    },
}
