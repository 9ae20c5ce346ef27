"""Every component an opts file can name, by role. Add a line to make a new one available.

Values are import paths: a module, or `module.Attribute` for classes (meters, handlers). Opts may also list
extra maps in `model.module_maps`, or name a component by its dotted import path directly.
"""
MODULE_MAP: dict[str, str] = {
    # input.input_name_py
    "synthetic_input": "playground.builtins.synthetic_input",
    "gfs_IN1k": "resnetdemo.lmdb_input",
    "lmdb_input": "resnetdemo.lmdb_input",
    # model.model_name_py
    "classification_model": "playground.builtins.classification_model",
    "IN1k_resnet": "resnetdemo.IN1k_resnet",
    # model.forward_pass_py
    "mlp_forward": "playground.builtins.mlp_forward",
    "explicit_resnet_forward": "resnetdemo.explicit_resnet_forward",
    "caffe2_resnet50_default_forward": "resnetdemo.caffe2_resnet50_default_forward",
    # model.parameter_update_py / model.optimizer_py
    "sgd_param_update": "playground.builtins.sgd_param_update",
    "explicit_resnet_param_update": "resnetdemo.explicit_resnet_param_update",
    "caffe2_resnet50_default_param_update": "resnetdemo.explicit_resnet_param_update",  # the seed's name, same recipe
    # model.rendezvous_py
    "rendezvous_filestore": "playground.builtins.rendezvous_filestore",
    "rendezvous_tcp": "playground.builtins.rendezvous_tcp",
    # model.additional_override_py
    "override_no_test_model_no_checkpoint": "playground.builtins.override_no_test_model_no_checkpoint",
    # output.gen_output_py
    "output_generator": "playground.builtins.output_generator",
    # output.gen_checkpoint_path_py
    "gen_checkpoint_path": "playground.builtins.gen_checkpoint_path",
    # output.metrics[].meter_py
    "ComputeLoss": "playground.meters.ComputeLoss",
    "ComputeTopKAccuracy": "playground.meters.ComputeTopKAccuracy",
    # output.handlers[].handler_py
    "BestCheckpoint": "playground.handlers.BestCheckpoint",
    "DumpGraph": "playground.handlers.DumpGraph",
    "EarlyStopping": "playground.handlers.EarlyStopping",
    "LRMonitor": "playground.handlers.LRMonitor",
    "LogReport": "playground.handlers.LogReport",
    "ModelStatistics": "playground.handlers.ModelStatistics",
    "PrintReport": "playground.handlers.PrintReport",
    "Profiler": "playground.handlers.Profiler",
    "ProgressBar": "playground.handlers.ProgressBar",
    "TerminateOnNaN": "playground.handlers.TerminateOnNaN",
}
