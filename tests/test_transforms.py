"""Training and test transforms: shapes, determinism under a seed, and the fused colour pass."""

import itertools

import cv2
import numpy as np
import pytest
import torch

from resnetdemo import transforms
from resnetdemo.shapes import render_shape
from resnetdemo.transforms import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, TrainTransform


@pytest.fixture
def image() -> np.ndarray:
    """A non-square BGR image, so resize and crop have work to do."""
    return cv2.resize(render_shape(seed=0, index=3, size=64)[0], (80, 60))


def full_train_transform(scale_jitter_type: int) -> TrainTransform:
    return TrainTransform(loadsize=48, imsize=40, scale_jitter_type=scale_jitter_type, mirror=True,
                          color_jitter=True, color_lighting=True)


@pytest.mark.parametrize("scale_jitter_type", [0, 1])
def test_train_transform_is_deterministic_under_a_seed(image, scale_jitter_type):
    transform = full_train_transform(scale_jitter_type)
    first = transform(image, np.random.default_rng(7))
    again = transform(image, np.random.default_rng(7))
    other = transform(image, np.random.default_rng(8))
    assert first.shape == (3, 40, 40) and first.dtype == torch.float32 and first.is_contiguous()
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_train_transform_equals_the_colour_steps_applied_one_by_one(image):
    """The fused 3x4 colour map must match jitter, lighting and normalisation applied in sequence."""
    fused = full_train_transform(scale_jitter_type=1)(image, np.random.default_rng(3))

    rng = np.random.default_rng(3)  # the same draws, in the same order, as TrainTransform
    pixels = transforms.random_resized_crop(image, 40, rng)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    rgb = pixels[:, :, ::-1].astype(np.float64)
    *uniforms, u_order = rng.random(4)
    order = list(itertools.permutations(["brightness", "contrast", "saturation"]))[int(u_order * 6)]
    for step, u in zip(order, uniforms):
        alpha = 1 + 0.4 * (2 * u - 1)
        gray = rgb @ transforms.GRAY_WEIGHTS_RGB
        if step == "brightness":
            rgb = rgb * alpha
        elif step == "contrast":
            rgb = rgb * alpha + (1 - alpha) * gray.mean()
        else:
            rgb = rgb * alpha + (1 - alpha) * gray[:, :, None]
    rgb += 255 * transforms.PCA_EIGVEC @ (rng.normal(0, 0.1, size=3) * transforms.PCA_EIGVAL)
    expected = ((rgb - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB).transpose(2, 0, 1)

    np.testing.assert_allclose(fused.numpy(), expected, atol=1e-4)


def test_test_transform_resizes_crops_the_centre_and_normalises_in_rgb(image):
    out = transforms.TestTransform(loadsize=48, imsize=40)(image)
    resized = cv2.resize(image, (64, 48), interpolation=cv2.INTER_AREA)  # 80x60 with shorter side 48
    centre = resized[4:44, 12:52, ::-1].astype(np.float64)
    expected = ((centre - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB).transpose(2, 0, 1)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-4)


def test_output_is_rgb_and_normalised_by_rgb_mean_and_std():
    bgr = np.full((32, 32, 3), (10, 20, 30), np.uint8)
    out = transforms.TestTransform(loadsize=32, imsize=32, mean=(1, 2, 3), std=(1, 2, 4))(bgr)
    assert out[:, 0, 0].tolist() == [(30 - 1) / 1, (20 - 2) / 2, (10 - 3) / 4]


def test_random_resized_crop_has_the_requested_size_for_any_image():
    rng = np.random.default_rng(0)
    for shape in [(10, 200, 3), (200, 10, 3), (33, 47, 3)]:
        assert transforms.random_resized_crop(np.zeros(shape, np.uint8), 24, rng).shape == (24, 24, 3)


def test_scale_jitter_type_must_be_0_or_1():
    with pytest.raises(ValueError, match="scale_jitter_type"):
        TrainTransform(loadsize=32, imsize=32, scale_jitter_type=2)
