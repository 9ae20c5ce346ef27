"""Override module: run epochs until the test loss is low enough, instead of a fixed count (the seed's
"run epoch by loss instead of predetermined iteration"). Use with "additional_override_py":
"examples.epochs_by_loss" from the repository root, and set model_param.target_test_loss."""
import math


def list_of_epochs(self):
    """Epochs while the latest test loss is at or above the target, never more than epoch_iter.num_epochs."""
    target = self.opts["model_param"]["target_test_loss"]
    epoch = self.state.epoch
    while epoch < self.opts["epoch_iter"]["num_epochs"] and self.latest.get("test_loss", math.inf) >= target:
        yield epoch
        epoch += 1
