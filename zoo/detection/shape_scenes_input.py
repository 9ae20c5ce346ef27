"""Input component: scenes of one to `max_shapes` shapes with their boxes and classes (zoo/detection/
shape_scenes.py), drawn from (seed, split, index) when read, so every epoch can see new images."""
from __future__ import annotations

from playground.opts import Opt
from zoo.detection.shape_scenes import ShapeScenes

OPTS = {
    "input.image_size": Opt((int,), 64, doc="Side of the square scene images, in pixels.", minimum=32),
    "input.max_shapes": Opt((int,), 4, doc="Most shapes in a scene (each has 1 to this many).", minimum=1,
                            maximum=8),
    "input.num_train_images": Opt((int,), 100000, doc="Distinct training scenes (drawn when read, never stored); "
                                  "the test scenes, epoch_iter.num_test_sample of them, are others.", minimum=1),
}


def get_dataset(exp, split: str) -> ShapeScenes:
    """input.num_train_images scenes for 'train', epoch_iter.num_test_sample for 'test'."""
    inp = exp.opts["input"]
    num = inp["num_train_images"] if split == "train" else exp.opts["epoch_iter"]["num_test_sample"]
    return ShapeScenes(exp.seed, split, num, inp["image_size"], inp["max_shapes"])
