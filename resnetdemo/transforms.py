"""Training and test image transforms: HWC BGR uint8 (as OpenCV decodes) in, CHW RGB float32 tensor out.

Geometry (crop, resize, mirror) runs on uint8 pixels with OpenCV. Every colour step — BGR to RGB, colour jitter,
PCA lighting noise, mean/std normalisation — is an affine map of each pixel's colour, so they are composed into
one 3x4 matrix and applied in a single `cv2.transform` pass: at training sizes, per-step numpy passes would cost
more than decoding. Every random draw comes from the `numpy.random.Generator` passed in, so a transform is
deterministic under a seed.
"""

import itertools
import math

import cv2
import numpy as np
import torch

IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)  # 0-255 scale
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
# AlexNet-style lighting noise: principal components of ImageNet RGB pixels in 0-1 scale (fb.resnet.torch values).
PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                       [-0.5808, -0.0045, -0.8140],
                       [-0.5836, -0.6948, 0.4203]])
LIGHTING_STD = 0.1
JITTER_STRENGTH = 0.4  # brightness, contrast and saturation factors are drawn from 1 ± 0.4
GRAY_WEIGHTS_RGB = (0.299, 0.587, 0.114)

_GRAY_WEIGHTS_BGR = GRAY_WEIGHTS_RGB[::-1]
_BGR_TO_RGB = np.eye(3)[::-1]
_JITTER_ORDERS = tuple(itertools.permutations(("brightness", "contrast", "saturation")))
_MIN_AREA = 0.08  # random-resized crop: fraction of the image area, and the log aspect-ratio range
_LOG_RATIO_LOW, _LOG_RATIO_HIGH = math.log(3 / 4), math.log(4 / 3)


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """`image` scaled so that its shorter side is `size` pixels; returned unchanged if it already is."""
    height, width = image.shape[:2]
    if min(height, width) == size:
        return image
    scale = size / min(height, width)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, new_size, interpolation=interpolation)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central `size` x `size` window of `image` (a view)."""
    top = (image.shape[0] - size) // 2
    left = (image.shape[1] - size) // 2
    return image[top:top + size, left:left + size]


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly placed `size` x `size` window of `image` (a view)."""
    u_top, u_left = rng.random(2).tolist()
    top = int(u_top * (image.shape[0] - size + 1))
    left = int(u_left * (image.shape[1] - size + 1))
    return image[top:top + size, left:left + size]


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A window covering 8-100% of the area with aspect ratio 3/4-4/3, resized to `size` x `size`
    (Inception-style scale augmentation; falls back to the central square when ten draws do not fit)."""
    height, width = image.shape[:2]
    for _ in range(10):
        u_area, u_ratio, u_top, u_left = rng.random(4).tolist()  # one call: draws cost more than arithmetic
        area = height * width * (_MIN_AREA + (1 - _MIN_AREA) * u_area)
        ratio = math.exp(_LOG_RATIO_LOW + (_LOG_RATIO_HIGH - _LOG_RATIO_LOW) * u_ratio)
        crop_w, crop_h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top, left = int(u_top * (height - crop_h + 1)), int(u_left * (width - crop_w + 1))
            break
    else:
        crop_w = crop_h = min(height, width)
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return cv2.resize(image[top:top + crop_h, left:left + crop_w], (size, size), interpolation=cv2.INTER_LINEAR)


def color_jitter_coefficients(mean_gray: float, rng: np.random.Generator) -> tuple[float, float, float]:
    """Brightness, contrast and saturation changes, in an order drawn from `rng`, as (p, q, c) in
    `rgb' = p * rgb + q * gray(rgb) + c`: every composition of the three has this form. `mean_gray` is the
    image's mean gray level, which the contrast change blends towards."""
    *uniforms, u_order = rng.random(4).tolist()  # one call: draws cost more than arithmetic
    p, q, c = 1.0, 0.0, 0.0
    for step, u in zip(_JITTER_ORDERS[int(u_order * len(_JITTER_ORDERS))], uniforms):
        alpha = 1 + JITTER_STRENGTH * (2 * u - 1)
        if step == "brightness":  # blend with black
            p, q, c = alpha * p, alpha * q, alpha * c
        elif step == "contrast":  # blend with the current mean gray (the gray weights sum to 1)
            p, q, c = alpha * p, alpha * q, alpha * c + (1 - alpha) * ((p + q) * mean_gray + c)
        else:  # saturation: blend each pixel with its own gray
            p, q = alpha * p, alpha * q + (1 - alpha) * (p + q)
    return p, q, c


class _Normalizer:
    """Applies `rgb' = p * rgb + q * gray(rgb) + shift`, then (rgb' - mean) / std, to BGR uint8 pixels in one
    pass, giving a CHW float32 tensor."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        inv_std = 1 / np.asarray(std, np.float64)
        self._rgb_term = _BGR_TO_RGB * inv_std[:, None]
        self._gray_term = np.outer(inv_std, _GRAY_WEIGHTS_BGR)
        self._inv_std = inv_std
        self._mean_term = np.asarray(mean, np.float64) * inv_std

    def __call__(self, image: np.ndarray, p: float = 1.0, q: float = 0.0,
                 shift: np.ndarray | float = 0.0) -> torch.Tensor:
        affine = np.empty((3, 4), np.float32)
        affine[:, :3] = p * self._rgb_term + q * self._gray_term
        affine[:, 3] = shift * self._inv_std - self._mean_term
        pixels = image.astype(np.float32)
        chw = np.empty((3, *image.shape[:2]), np.float32)
        for channel in range(3):  # one output plane each: half the cost of transforming, then transposing
            cv2.transform(pixels, affine[channel:channel + 1], dst=chw[channel])
        return torch.from_numpy(chw)


class TrainTransform:
    """Scale augmentation, mirroring, colour jitter and lighting noise, then normalisation."""

    def __init__(self, *, loadsize: int, imsize: int, scale_jitter_type: int = 0, mirror: bool = True,
                 color_jitter: bool = False, color_lighting: bool = False,
                 mean: tuple[float, ...] = IMAGENET_MEAN_RGB, std: tuple[float, ...] = IMAGENET_STD_RGB):
        if scale_jitter_type not in (0, 1):
            raise ValueError(f"scale_jitter_type must be 0 or 1, got {scale_jitter_type!r}")
        self.loadsize, self.imsize, self.scale_jitter_type = loadsize, imsize, scale_jitter_type
        self.mirror, self.color_jitter, self.color_lighting = mirror, color_jitter, color_lighting
        self._normalize = _Normalizer(mean, std)
        self._lighting = 255 * LIGHTING_STD * PCA_EIGVEC * PCA_EIGVAL  # RGB shift per standard-normal draw

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        if self.scale_jitter_type == 0:
            image = random_crop(resize_shorter_side(image, self.loadsize), self.imsize, rng)
        else:
            image = random_resized_crop(image, self.imsize, rng)
        if self.mirror and rng.random() < 0.5:
            image = cv2.flip(image, 1)
        p, q, c = 1.0, 0.0, 0.0
        if self.color_jitter:
            mean_b, mean_g, mean_r, _ = cv2.mean(image)
            mean_gray = sum(w * m for w, m in zip(_GRAY_WEIGHTS_BGR, (mean_b, mean_g, mean_r)))
            p, q, c = color_jitter_coefficients(mean_gray, rng)
        shift = c + self._lighting @ rng.standard_normal(3) if self.color_lighting else c
        return self._normalize(image, p, q, shift)


class TestTransform:
    """Shorter side to `loadsize`, central `imsize` crop, normalisation: no randomness (`rng` is accepted so
    both transforms are called alike, and ignored)."""

    def __init__(self, *, loadsize: int, imsize: int,
                 mean: tuple[float, ...] = IMAGENET_MEAN_RGB, std: tuple[float, ...] = IMAGENET_STD_RGB):
        self.loadsize, self.imsize = loadsize, imsize
        self._normalize = _Normalizer(mean, std)

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        return self._normalize(center_crop(resize_shorter_side(image, self.loadsize), self.imsize))
