"""Object detection: one to four shapes per image at random places and scales, found by a small SSD (multi-scale
anchors, hard-negative mining, a classification and a box-regression loss, per-class NMS in eval mode) and
scored by COCO mean average precision."""

BENCHMARK = {
    "detection_ssd": {"opts": "examples/detection_ssd.json", "metric": "test_map50", "target": 0.6, "minutes": 10,
                      "report": ["test_map"]},
}
