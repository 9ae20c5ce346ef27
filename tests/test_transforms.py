"""Training and test transforms: shapes, determinism under a seed, the fused colour matrices and their pass."""

import itertools

import cv2
import numpy as np
import pytest
import torch

from resnetdemo import transforms
from resnetdemo.shapes import render_shape
from resnetdemo.transforms import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, NUM_DRAWS, TrainTransform, counter_uniforms


@pytest.fixture
def image() -> np.ndarray:
    """A non-square BGR image, so resize and crop have work to do."""
    return cv2.resize(render_shape(seed=0, index=3, size=64)[0], (80, 60))


def full_train_transform(scale_jitter_type: int) -> TrainTransform:
    return TrainTransform(loadsize=48, imsize=40, scale_jitter_type=scale_jitter_type, mirror=True,
                          color_jitter=True, color_lighting=True)


def augment(transform, image: np.ndarray, draws: np.ndarray) -> torch.Tensor:
    """The network input `transform` makes of `image` with one row of draws: crop, then colour pass."""
    crop = np.empty((transform.imsize, transform.imsize, 3), np.uint8)
    transform.crop(image, draws[0].tolist(), crop)
    return transforms.apply_colour(torch.from_numpy(crop[None]), torch.from_numpy(transform.colour(crop[None], draws)))


def test_counter_uniforms_depend_only_on_key_and_index():
    together = counter_uniforms(7, [3, 11, 5])
    assert together.shape == (3, NUM_DRAWS) and together.dtype == np.float64
    assert np.array_equal(together[1], counter_uniforms(7, [11])[0])
    assert not np.array_equal(together[1], counter_uniforms(8, [11])[0])
    many = counter_uniforms(0, range(20_000), 4)
    assert many.min() >= 0 and many.max() < 1
    assert abs(many.mean() - 0.5) < 0.01 and abs(many.var() - 1 / 12) < 0.005
    assert abs(np.corrcoef(many[:, 0], many[:, 1])[0, 1]) < 0.03  # draws of one record are not correlated


def test_standard_normals_have_unit_variance_and_no_correlation():
    normals = transforms.standard_normals(counter_uniforms(1, range(20_000), 4))
    assert normals.shape == (20_000, 3)
    assert np.allclose(normals.mean(0), 0, atol=0.03) and np.allclose(normals.std(0), 1, atol=0.03)
    assert np.abs(np.corrcoef(normals.T) - np.eye(3)).max() < 0.03


@pytest.mark.parametrize("scale_jitter_type", [0, 1])
def test_train_transform_is_deterministic_under_its_draws(image, scale_jitter_type):
    transform = full_train_transform(scale_jitter_type)
    first = augment(transform, image, counter_uniforms(0, [7]))
    again = augment(transform, image, counter_uniforms(0, [7]))
    other = augment(transform, image, counter_uniforms(0, [8]))
    assert first.shape == (1, 3, 40, 40) and first.dtype == torch.float32 and first.is_contiguous()
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_colour_matrices_equal_the_colour_steps_applied_one_by_one(image):
    """The fused 3x4 colour map must match jitter, lighting and normalisation applied in sequence."""
    transform = full_train_transform(scale_jitter_type=1)
    for index in range(12):  # every jitter order turns up
        draws = counter_uniforms(3, [index])
        fused = augment(transform, image, draws)[0]

        row = draws[0]
        crop = np.empty((40, 40, 3), np.uint8)
        top, left, height, width = transforms.random_resized_crop_box(60, 80, row[:40].tolist())
        cv2.resize(image[top:top + height, left:left + width], (40, 40), dst=crop)
        pixels = crop[:, ::-1] if row[40] < 0.5 else crop
        rgb = pixels[:, :, ::-1].astype(np.float64)
        *uniforms, u_order = row[41:45]
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
        u1, u2, u3, u4 = row[45:49]
        normals = np.array([np.sqrt(-2 * np.log(1 - u1)) * np.cos(2 * np.pi * u2),
                            np.sqrt(-2 * np.log(1 - u1)) * np.sin(2 * np.pi * u2),
                            np.sqrt(-2 * np.log(1 - u3)) * np.cos(2 * np.pi * u4)])
        rgb += 255 * transforms.PCA_EIGVEC @ (0.1 * normals * transforms.PCA_EIGVAL)
        expected = ((rgb - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB).transpose(2, 0, 1)

        np.testing.assert_allclose(fused.numpy(), expected, atol=1e-4)


def test_test_transform_resizes_crops_the_centre_and_normalises_in_rgb(image):
    out = augment(transforms.TestTransform(loadsize=48, imsize=40), image, counter_uniforms(0, [0]))[0]
    resized = cv2.resize(image, (64, 48), interpolation=cv2.INTER_AREA)  # 80x60 with shorter side 48
    centre = resized[4:44, 12:52, ::-1].astype(np.float64)
    expected = ((centre - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB).transpose(2, 0, 1)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-4)


def test_output_is_rgb_and_normalised_by_rgb_mean_and_std():
    bgr = np.full((32, 32, 3), (10, 20, 30), np.uint8)
    out = augment(transforms.TestTransform(loadsize=32, imsize=32, mean=(1, 2, 3), std=(1, 2, 4)), bgr,
                  counter_uniforms(0, [0]))
    assert out[0, :, 0, 0].tolist() == [(30 - 1) / 1, (20 - 2) / 2, (10 - 3) / 4]


def test_batched_colour_pass_equals_the_per_image_one():
    """What a GPU runs (one batched product) against what a CPU runs (cv2.transform per image and plane)."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (4, 9, 7, 3), dtype=torch.uint8, generator=generator)
    colour = torch.randn((4, 3, 4), generator=generator)
    per_image = transforms.apply_colour(pixels, colour)
    assert per_image.shape == (4, 3, 9, 7)
    torch.testing.assert_close(transforms.apply_colour_batched(pixels, colour), per_image, atol=1e-4, rtol=1e-5)


def test_random_resized_crop_fits_any_image():
    draws = counter_uniforms(0, range(50), 40)
    for height, width in [(10, 200), (200, 10), (33, 47)]:
        for row in draws.tolist():
            top, left, crop_h, crop_w = transforms.random_resized_crop_box(height, width, row)
            assert 0 <= top and top + crop_h <= height and 0 <= left and left + crop_w <= width
            assert crop_h > 0 and crop_w > 0


def test_scale_jitter_type_must_be_0_or_1():
    with pytest.raises(ValueError, match="scale_jitter_type"):
        TrainTransform(loadsize=32, imsize=32, scale_jitter_type=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_colour_pass_on_a_gpu_equals_the_cpu_one():
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8, generator=generator)
    colour = torch.randn((8, 3, 4), generator=generator)
    on_gpu = transforms.apply_colour(pixels.cuda(), colour.cuda())
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), transforms.apply_colour(pixels, colour), atol=1e-2, rtol=1e-3)
