"""Resizing an image by its shorter side, with OpenCV alone: `playground make-lmdb --resize-shorter` stores images
resized by it without importing torch (about a second), and the training transforms resize to `loadsize` with it.
"""
import numpy as np

from resnetdemo.vision import cv2


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """`image` scaled so that its shorter side is `size` pixels; returned unchanged if it already is."""
    height, width = image.shape[:2]
    if min(height, width) == size:
        return image
    scale = size / min(height, width)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, new_size, interpolation=interpolation)
