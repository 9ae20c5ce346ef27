"""The built-in synthetic dataset: ten classes of coloured geometric shapes on noisy backgrounds.

The shape is the label; colour, position, size, rotation and noise are nuisance. Every image depends only on
(seed, index), so any record can be regenerated on its own, and datasets need no download.
"""

from resnetdemo.vision import cv2
import numpy as np

CLASS_NAMES = ("circle", "square", "triangle", "star", "cross", "ring", "ellipse", "diamond", "hexagon", "arrow")
NUM_CLASSES = len(CLASS_NAMES)

_SUBPIXEL_BITS = 4  # cv2.fillPoly `shift`: polygon vertices with 1/16 pixel precision
_MIN_COLOR_DISTANCE = 80.0  # mean absolute BGR difference between shape and background


def _regular_polygon(corners: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    angles = phase + np.arange(corners) * 2 * np.pi / corners
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    points = _regular_polygon(10)
    points[1::2] *= 0.4
    return points


def _cross() -> np.ndarray:
    a, w = 1.0, 0.3
    return np.array([(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a), (-w, w), (-a, w),
                     (-a, -w), (-w, -w)])


def _arrow() -> np.ndarray:
    return np.array([(-1.0, -0.15), (0.2, -0.15), (0.2, -0.55), (1.0, 0.0), (0.2, 0.55), (0.2, 0.15),
                     (-1.0, 0.15)])


def _outlines(label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """(outer polygon, hole polygon or None) of class `label`, in units of the shape's radius."""
    name = CLASS_NAMES[label]
    if name == "ring":
        return _regular_polygon(48), _regular_polygon(48, radius=rng.uniform(0.5, 0.65))
    if name == "ellipse":
        return _regular_polygon(48) * [1.0, rng.uniform(0.4, 0.6)], None
    polygons = {"circle": lambda: _regular_polygon(48),
                "square": lambda: _regular_polygon(4, phase=np.pi / 4),
                "triangle": lambda: _regular_polygon(3),
                "star": _star,
                "cross": _cross,
                "diamond": lambda: _regular_polygon(4) * [1.0, 0.55],
                "hexagon": lambda: _regular_polygon(6),
                "arrow": _arrow}
    return polygons[name](), None


def _shape_mask(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] (HxWx1 float32) of one randomly placed, sized and rotated shape."""
    radius = rng.uniform(0.18, 0.42) * size
    center = rng.uniform(radius, size - radius, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    return shape_mask_and_box(label, size, radius, center, angle, rng)[0]


def shape_mask_and_box(label: int, size: int, radius: float, center: np.ndarray, angle: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(anti-aliased coverage in [0, 1] as HxWx1 float32, its box [x0, y0, x1, y1] in pixels, clipped to the
    image) of one shape of class `label` at `center`, `radius` and `angle`: what a scene of several draws."""
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    outer, hole = _outlines(label, rng)
    mask = np.zeros((size, size), np.uint8)
    for polygon, value in ((outer, 255), (hole, 0)):
        if polygon is not None:
            pixels = (polygon @ rotation.T * radius + center) * (1 << _SUBPIXEL_BITS)
            cv2.fillPoly(mask, [np.round(pixels).astype(np.int32)], value, cv2.LINE_AA, _SUBPIXEL_BITS)
    corners = outer @ rotation.T * radius + center + 0.5  # pixel i covers [i, i + 1]
    # cv2's anti-aliased fill covers about half a pixel more on each side: the box bounds what shows
    box = np.clip(np.concatenate([corners.min(axis=0) - 0.5, corners.max(axis=0) + 0.5]), 0, size)
    return (mask.astype(np.float32) / 255)[:, :, None], box.astype(np.float32)


def gradient_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random colour with a vertical or horizontal ramp, as 1xSx3 or Sx1x3 float64 (broadcasts to SxSx3)."""
    background = rng.uniform(0, 255, size=3)
    ramp = np.linspace(-1, 1, size)
    ramp = ramp[:, None, None] if rng.random() < 0.5 else ramp[None, :, None]  # vertical or horizontal
    return background + ramp * rng.uniform(-40, 40, size=3)


def contrasting_color(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random BGR colour far enough from the mean `background` colour to be seen."""
    while True:
        color = rng.uniform(0, 255, size=3)
        if np.abs(color - background).mean() >= _MIN_COLOR_DISTANCE:
            return color


def render_shape(seed: int, index: int, size: int = 64) -> tuple[np.ndarray, int]:
    """(HWC BGR uint8 image, label) of record `index` of the shapes dataset drawn with `seed`."""
    rng = np.random.default_rng([seed, index])
    label = index % NUM_CLASSES
    background = gradient_background(size, rng)
    color = contrasting_color(background.mean(axis=(0, 1)), rng)
    mask = _shape_mask(label, size, rng)
    image = background * (1 - mask) + color * mask
    image += rng.normal(0, rng.uniform(4, 24), size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label
