"""Model component: object detection with SSD's multibox loss. Blobs: loss (the weighted sum optimised),
loss_cls and loss_box (each already weighted), output (the network's dict; in test passes it holds the decoded
"detections") and label (the targets, a list of {"boxes", "labels"} per image)."""
from __future__ import annotations

from playground.anyexp import AnyExp
from playground.errors import UsageError
from playground.opts import Opt
from zoo.detection.ssd import MultiBoxLoss

OPTS = {
    "model_param.cls_loss_weight": Opt((int, float), 1.0, doc="Weight of the detection's classification loss "
                                       "(loss_cls)."),
    "model_param.box_loss_weight": Opt((int, float), 1.0, doc="Weight of the detection's box regression loss "
                                       "(loss_box)."),
    "model_param.negative_ratio": Opt((int, float), 3, doc="Hard negatives per positive anchor in loss_cls.",
                                      exclusive_minimum=0),
    "model_param.match_iou": Opt((int, float), 0.5, doc="IoU from which an anchor is matched to a box.",
                                 exclusive_minimum=0, maximum=1),
}


class Experiment(AnyExp):
    """A detector whose network has `anchors` and returns class logits and box offsets (ssd_forward)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not hasattr(self.network, "anchors"):
            raise UsageError(f"model.model_name_py detection_model needs a network with anchors, such as "
                             f"ssd_forward's; {type(self.network).__name__} has none")
        param = self.opts["model_param"]
        self.criterion = MultiBoxLoss(self.network.anchors, param["cls_loss_weight"], param["box_loss_weight"],
                                      param["negative_ratio"], param["match_iou"]).to(self.device)

    def forward(self, inputs, labels) -> dict:
        output = self.model(inputs)
        losses = self.criterion(output, labels)
        return {"loss": losses["loss_cls"] + losses["loss_box"], **losses, "output": output, "label": labels}
