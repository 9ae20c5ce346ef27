"""Training and test image transforms, in two halves.

In the loader, per image: geometry (crop, resize, mirror) on the HWC BGR uint8 pixels OpenCV decodes, written
straight into the batch. Every colour step — BGR to RGB, colour jitter, PCA lighting noise, mean/std
normalisation — is an affine map of each pixel's colour, so they are composed into one 3x4 matrix per image that
travels with the uint8 pixels. `apply_colour` then applies the batch's matrices where the network runs: batched
on a GPU (a quarter of the bytes to copy there), one `cv2.transform` pass per image on a CPU.

Every random draw is a uniform from `counter_uniforms`: the draws of record i in epoch e depend only on
(seed, e, i), not on the batch, worker or process that reads it, and a whole batch's draws cost one call.
"""

import itertools
import math
from collections.abc import Sequence

from resnetdemo.vision import cv2
import numpy as np
import torch

from playground import data
from resnetdemo.resize import resize_shorter_side

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
_BRIGHTNESS, _CONTRAST, _SATURATION = range(3)
_JITTER_STEPS = np.array(list(itertools.permutations((_BRIGHTNESS, _CONTRAST, _SATURATION))))  # the six orders
_MIN_AREA = 0.08  # random-resized crop: fraction of the image area, and the log aspect-ratio range
_LOG_RATIO_LOW, _LOG_RATIO_HIGH = math.log(3 / 4), math.log(4 / 3)
# An image's row of uniforms: 10 random-resized-crop attempts of 4 (a plain random crop uses the first 2), the
# mirror, 4 for colour jitter, 4 for lighting noise.
_CROP, _MIRROR, _JITTER, _LIGHTING = slice(0, 40), 40, slice(41, 45), slice(45, 49)
NUM_DRAWS = 49
CROP_DRAWS = _MIRROR + 1  # the ones `crop` reads
_U64 = np.uint64


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function: a bijective mix of 64-bit integers (uint64 arithmetic wraps), in place."""
    z ^= z >> _U64(30)
    z *= _U64(0xBF58476D1CE4E5B9)
    z ^= z >> _U64(27)
    z *= _U64(0x94D049BB133111EB)
    z ^= z >> _U64(31)
    return z


def counter_uniforms(key: int, indices: Sequence[int], count: int = NUM_DRAWS) -> np.ndarray:
    """(len(indices), count) float64 uniforms in [0, 1): row r is a function of (key, indices[r]) alone."""
    streams = _splitmix64(_U64(key) ^ np.asarray(indices, _U64))
    counters = np.arange(1, count + 1, dtype=_U64) * _U64(0x9E3779B97F4A7C15)
    bits = _splitmix64(streams[:, None] + counters)
    bits >>= _U64(11)
    return bits * 2.0 ** -53


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central `size` x `size` window of `image` (a view)."""
    top = (image.shape[0] - size) // 2
    left = (image.shape[1] - size) // 2
    return image[top:top + size, left:left + size]


def random_crop(image: np.ndarray, size: int, u_top: float, u_left: float) -> np.ndarray:
    """The `size` x `size` window of `image` (a view) placed by two uniforms."""
    top = int(u_top * (image.shape[0] - size + 1))
    left = int(u_left * (image.shape[1] - size + 1))
    return image[top:top + size, left:left + size]


def random_resized_crop_box(height: int, width: int, draws: Sequence[float]) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of a window covering 8-100% of the area with aspect ratio 3/4-4/3
    (Inception-style scale augmentation), from four uniforms per attempt; the central square when no attempt
    fits."""
    for attempt in range(0, len(draws), 4):
        u_area, u_ratio, u_top, u_left = draws[attempt:attempt + 4]
        area = height * width * (_MIN_AREA + (1 - _MIN_AREA) * u_area)
        ratio = math.exp(_LOG_RATIO_LOW + (_LOG_RATIO_HIGH - _LOG_RATIO_LOW) * u_ratio)
        crop_w, crop_h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            return int(u_top * (height - crop_h + 1)), int(u_left * (width - crop_w + 1)), crop_h, crop_w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def color_jitter_coefficients(mean_gray: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, ...]:
    """Brightness, contrast and saturation changes of each image, in an order drawn from the last of its four
    uniforms (`draws` is N x 4), as arrays (p, q, c) in `rgb' = p * rgb + q * gray(rgb) + c`: every composition of
    the three has this form. `mean_gray` holds each image's mean gray level, which contrast blends towards."""
    steps = _JITTER_STEPS[(draws[:, 3] * len(_JITTER_STEPS)).astype(int)]
    alphas = 1 + JITTER_STRENGTH * (2 * draws[:, :3] - 1)
    contrast, saturation = steps == _CONTRAST, steps == _SATURATION
    p, q, c = np.ones(len(draws)), np.zeros(len(draws)), np.zeros(len(draws))
    for k, (alpha, rest) in enumerate(zip(alphas.T, (1 - alphas).T)):  # each step on all images at once
        pq, unchanged = p + q, c
        blended = alpha * c + rest * (pq * mean_gray + c)
        c = alpha * c  # brightness blends with black, contrast with the mean gray
        np.copyto(c, blended, where=contrast[:, k])
        np.copyto(c, unchanged, where=saturation[:, k])
        q = alpha * q  # saturation blends with each pixel's gray
        np.copyto(q, q + rest * pq, where=saturation[:, k])
        p = alpha * p
    return p, q, c


def standard_normals(draws: np.ndarray) -> np.ndarray:
    """N x 3 independent standard normal draws from N x 4 uniforms (Box-Muller)."""
    radius = np.sqrt(-2 * np.log1p(-draws[:, [0, 0, 2]]))
    angle = 2 * np.pi * draws[:, [1, 1, 3]]
    return radius * np.where([True, False, True], np.cos(angle), np.sin(angle))


class _Normalizer:
    """The 3x4 matrices taking BGR uint8 pixels to `(p * rgb + q * gray(rgb) + shift - mean) / std`, one per
    image for arrays p, q (N) and shift (N x 3)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        inv_std = 1 / np.asarray(std, np.float64)
        self._rgb_term = _BGR_TO_RGB * inv_std[:, None]
        self._gray_term = np.outer(inv_std, _GRAY_WEIGHTS_BGR)
        self._inv_std = inv_std
        self._mean_term = np.asarray(mean, np.float64) * inv_std

    def __call__(self, p: np.ndarray, q: np.ndarray, shift: np.ndarray) -> np.ndarray:
        affine = np.empty((len(p), 3, 4), np.float32)
        affine[:, :, :3] = p[:, None, None] * self._rgb_term + q[:, None, None] * self._gray_term
        affine[:, :, 3] = shift * self._inv_std - self._mean_term
        return affine


class TrainTransform:
    """Scale augmentation and mirroring of each image (`crop`); colour jitter, lighting noise and normalisation
    as each image's colour matrix (`colour`)."""

    def __init__(self, *, loadsize: int, imsize: int, scale_jitter_type: int = 0, mirror: bool = True,
                 color_jitter: bool = False, color_lighting: bool = False,
                 mean: tuple[float, ...] = IMAGENET_MEAN_RGB, std: tuple[float, ...] = IMAGENET_STD_RGB):
        if scale_jitter_type not in (0, 1):
            raise ValueError(f"scale_jitter_type must be 0 or 1, got {scale_jitter_type!r}")
        self.loadsize, self.imsize, self.scale_jitter_type = loadsize, imsize, scale_jitter_type
        self._size = (imsize, imsize)
        self.mirror, self.color_jitter, self.color_lighting = mirror, color_jitter, color_lighting
        self._normalize = _Normalizer(mean, std)
        self._plain = self._normalize(np.ones(1), np.zeros(1), np.zeros((1, 1)))  # without colour augmentation
        self._lighting = 255 * LIGHTING_STD * PCA_EIGVEC * PCA_EIGVAL  # RGB shift per standard-normal draw
        self.num_draws = NUM_DRAWS if color_jitter or color_lighting else CROP_DRAWS  # the uniforms it reads

    def crop(self, image: np.ndarray, draws: Sequence[float], out: np.ndarray) -> None:
        """Writes the `imsize` crop of BGR `image` into `out`; `draws` are the image's NUM_DRAWS uniforms."""
        flip = self.mirror and draws[_MIRROR] < 0.5
        if self.scale_jitter_type == 0:
            crop = random_crop(resize_shorter_side(image, self.loadsize), self.imsize, *draws[:2])
            if flip:
                cv2.flip(crop, 1, out)
            else:
                out[...] = crop
        else:  # OpenCV's arguments by position: by keyword, a call costs 0.5-2 us more, a tenth of a 64 px crop
            top, left, height, width = random_resized_crop_box(*image.shape[:2], draws[_CROP])
            cv2.resize(image[top:top + height, left:left + width], self._size, out, 0, 0, cv2.INTER_LINEAR)
            if flip:
                cv2.flip(out, 1, out)

    def colour(self, crops: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """(N, 3, 4) colour matrices of N crops (N x imsize x imsize x 3) from their N x NUM_DRAWS uniforms."""
        if not (self.color_jitter or self.color_lighting):
            return np.repeat(self._plain, len(crops), axis=0)
        p, q, c = np.ones(len(crops)), np.zeros(len(crops)), np.zeros(len(crops))
        if self.color_jitter:
            mean_gray = np.array([cv2.mean(crop)[:3] for crop in crops]) @ _GRAY_WEIGHTS_BGR
            p, q, c = color_jitter_coefficients(mean_gray, draws[:, _JITTER])
        shift = c[:, None] + standard_normals(draws[:, _LIGHTING]) @ self._lighting.T if self.color_lighting \
            else c[:, None]
        return self._normalize(p, q, shift)


class TestTransform:
    """Shorter side to `loadsize`, central `imsize` crop, normalisation: no randomness (`draws` are accepted so
    both transforms are called alike, and ignored)."""

    def __init__(self, *, loadsize: int, imsize: int,
                 mean: tuple[float, ...] = IMAGENET_MEAN_RGB, std: tuple[float, ...] = IMAGENET_STD_RGB):
        self.loadsize, self.imsize = loadsize, imsize
        self._affine = _Normalizer(mean, std)(np.ones(1), np.zeros(1), np.zeros((1, 3)))
        self.num_draws = 0

    def crop(self, image: np.ndarray, draws: Sequence[float], out: np.ndarray) -> None:
        out[...] = center_crop(resize_shorter_side(image, self.loadsize), self.imsize)

    def colour(self, crops: np.ndarray, draws: np.ndarray) -> np.ndarray:
        return np.repeat(self._affine, len(crops), axis=0)


def apply_colour(pixels: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float32 network input from (N, H, W, 3) uint8 BGR pixels and their (N, 3, 4) colour matrices,
    on the pixels' device. On a CPU, where a batched product is several times slower than OpenCV, it is one
    `cv2.transform` per image and output plane."""
    if pixels.device.type != "cpu":
        return apply_colour_batched(pixels, colour)
    out, = data.batch_tensors(((len(pixels), 3, *pixels.shape[1:3]), torch.float32))
    for image, planes, matrix in zip(pixels.numpy(), out.numpy(), colour.numpy()):
        floats = image.astype(np.float32)
        for channel in range(3):  # one output plane each: half the cost of transforming, then transposing
            cv2.transform(floats, matrix[channel:channel + 1], dst=planes[channel])
    return out


def apply_colour_batched(pixels: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """`apply_colour` as one batched product: what a GPU runs."""
    return torch.einsum("nij,nhwj->nihw", colour[:, :, :3], pixels.float()) + colour[:, :, 3, None, None]
