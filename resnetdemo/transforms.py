"""Training and test image transforms: HWC BGR uint8 (as OpenCV decodes) in, CHW RGB float32 tensor out.

Geometry (crop, resize, mirror) runs on uint8 pixels with OpenCV. Every colour step — BGR to RGB, colour jitter,
PCA lighting noise, mean/std normalisation — is an affine map of each pixel's colour, so they are composed into
one 3x4 matrix and applied in a single `cv2.transform` pass. Every random draw comes from the
`numpy.random.Generator` passed in, so a transform is deterministic under a seed.
"""

import math

import cv2
import numpy as np
import torch

IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)  # 0-255 scale
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)

# AlexNet-style lighting noise: principal components of ImageNet RGB pixels in 0-1 scale (fb.resnet.torch values).
_PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
_PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                        [-0.5808, -0.0045, -0.8140],
                        [-0.5836, -0.6948, 0.4203]])
_LIGHTING_STD = 0.1
_JITTER_STRENGTH = 0.4  # brightness, contrast and saturation factors are drawn from 1 ± 0.4
_GRAY_RGB = np.array([0.299, 0.587, 0.114])
_BGR_TO_RGB = np.eye(3)[::-1]
_RESIZED_CROP_AREA = (0.08, 1.0)
_RESIZED_CROP_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))


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
    top = rng.integers(image.shape[0] - size + 1)
    left = rng.integers(image.shape[1] - size + 1)
    return image[top:top + size, left:left + size]


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A window covering 8-100% of the area with aspect ratio 3/4-4/3, resized to `size` x `size`
    (Inception-style scale augmentation; falls back to the central window when ten draws do not fit)."""
    height, width = image.shape[:2]
    for _ in range(10):
        area = height * width * rng.uniform(*_RESIZED_CROP_AREA)
        ratio = math.exp(rng.uniform(*_RESIZED_CROP_LOG_RATIO))
        crop_w, crop_h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top, left = rng.integers(height - crop_h + 1), rng.integers(width - crop_w + 1)
            break
    else:
        crop_w = crop_h = min(height, width)
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return cv2.resize(image[top:top + crop_h, left:left + crop_w], (size, size), interpolation=cv2.INTER_LINEAR)


def _color_jitter(matrix: np.ndarray, offset: np.ndarray, mean_bgr: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Composes brightness, contrast and saturation changes (in an order drawn from `rng`) onto the affine
    colour map `rgb = matrix @ bgr + offset`; `mean_bgr` is the image's mean colour, which contrast needs."""
    for step in rng.permutation(3):
        alpha = 1 + rng.uniform(-_JITTER_STRENGTH, _JITTER_STRENGTH)
        if step == 0:  # brightness: blend with black
            step_matrix, step_offset = alpha * np.eye(3), np.zeros(3)
        elif step == 1:  # contrast: blend with the image's mean gray
            mean_gray = _GRAY_RGB @ (matrix @ mean_bgr + offset)
            step_matrix, step_offset = alpha * np.eye(3), np.full(3, (1 - alpha) * mean_gray)
        else:  # saturation: blend with each pixel's own gray
            step_matrix, step_offset = alpha * np.eye(3) + (1 - alpha) * np.outer(np.ones(3), _GRAY_RGB), np.zeros(3)
        matrix, offset = step_matrix @ matrix, step_matrix @ offset + step_offset
    return matrix, offset


def _lighting_noise(rng: np.random.Generator) -> np.ndarray:
    """The RGB shift (0-255 scale) of AlexNet's PCA lighting augmentation."""
    return 255 * _PCA_EIGVEC @ (rng.normal(0, _LIGHTING_STD, size=3) * _PCA_EIGVAL)


def _to_normalized_tensor(image: np.ndarray, matrix: np.ndarray, offset: np.ndarray,
                          mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """CHW float32 tensor of `(matrix @ bgr + offset - mean) / std` for every pixel, in one OpenCV pass."""
    affine = np.hstack([matrix / std[:, None], ((offset - mean) / std)[:, None]]).astype(np.float32)
    pixels = image.astype(np.float32)
    cv2.transform(pixels, affine, dst=pixels)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


class TrainTransform:
    """Scale augmentation, mirroring, colour jitter and lighting noise, then normalisation."""

    def __init__(self, *, loadsize: int, imsize: int, scale_jitter_type: int = 0, mirror: bool = True,
                 color_jitter: bool = False, color_lighting: bool = False,
                 mean: tuple[float, ...] = IMAGENET_MEAN_RGB, std: tuple[float, ...] = IMAGENET_STD_RGB):
        if scale_jitter_type not in (0, 1):
            raise ValueError(f"scale_jitter_type must be 0 or 1, got {scale_jitter_type!r}")
        self.loadsize, self.imsize, self.scale_jitter_type = loadsize, imsize, scale_jitter_type
        self.mirror, self.color_jitter, self.color_lighting = mirror, color_jitter, color_lighting
        self.mean, self.std = np.asarray(mean, np.float64), np.asarray(std, np.float64)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        if self.scale_jitter_type == 0:
            image = random_crop(resize_shorter_side(image, self.loadsize), self.imsize, rng)
        else:
            image = random_resized_crop(image, self.imsize, rng)
        if self.mirror and rng.random() < 0.5:
            image = cv2.flip(image, 1)
        matrix, offset = _BGR_TO_RGB, np.zeros(3)
        if self.color_jitter:
            matrix, offset = _color_jitter(matrix, offset, np.asarray(cv2.mean(image)[:3]), rng)
        if self.color_lighting:
            offset = offset + _lighting_noise(rng)
        return _to_normalized_tensor(image, matrix, offset, self.mean, self.std)


class TestTransform:
    """Shorter side to `loadsize`, central `imsize` crop, normalisation: no randomness."""

    def __init__(self, *, loadsize: int, imsize: int,
                 mean: tuple[float, ...] = IMAGENET_MEAN_RGB, std: tuple[float, ...] = IMAGENET_STD_RGB):
        self.loadsize, self.imsize = loadsize, imsize
        self.mean, self.std = np.asarray(mean, np.float64), np.asarray(std, np.float64)

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        image = center_crop(resize_shorter_side(image, self.loadsize), self.imsize)
        return _to_normalized_tensor(image, _BGR_TO_RGB, np.zeros(3), self.mean, self.std)
