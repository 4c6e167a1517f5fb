"""Colour ops against PIL's ImageOps / ImageEnhance on small random images."""

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from detection.dataloader.augment import color_ops


def _images():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
    # A narrow-range, smooth image: equalize / autocontrast actually stretch it.
    yy, xx = np.mgrid[0:40, 0:36]
    smooth = np.stack([40 + yy, 90 + xx // 2, 60 + (yy + xx) // 3], axis=-1).astype(np.uint8)
    smooth[5:15, 10:20] = [200, 30, 120]
    constant_channel = noise.copy()
    constant_channel[..., 1] = 77
    return [noise, smooth, constant_channel]


def _assert_close(ours, expected, tolerance):
    ours = np.asarray(ours).astype(int)
    expected = np.asarray(expected).astype(int)
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= tolerance, np.abs(ours - expected).max()


PIL_OPS = [
    ("equalize", color_ops.equalize, ImageOps.equalize, 0),
    ("autocontrast", color_ops.autocontrast, ImageOps.autocontrast, 0),
    ("invert", color_ops.invert, ImageOps.invert, 0),
]


@pytest.mark.parametrize("name,ours,theirs,tolerance", PIL_OPS, ids=[o[0] for o in PIL_OPS])
def test_parameterless_ops_match_pil(name, ours, theirs, tolerance):
    for image in _images():
        _assert_close(ours(image), theirs(Image.fromarray(image)), tolerance)


@pytest.mark.parametrize("bits", range(1, 9))
def test_posterize_matches_pil(bits):
    for image in _images():
        _assert_close(
            color_ops.posterize(image, bits), ImageOps.posterize(Image.fromarray(image), bits), 0
        )


@pytest.mark.parametrize("threshold", [0, 1, 77, 128, 200, 255, 256])
def test_solarize_matches_pil(threshold):
    for image in _images():
        expected = ImageOps.solarize(Image.fromarray(image), threshold)
        _assert_close(color_ops.solarize(image, threshold), expected, 0)


@pytest.mark.parametrize("addition", [0, 33, 110, -40])
def test_solarize_add_matches_pil_point_table(addition):
    # PIL has no SolarizeAdd; the reference is PIL applying the op's definition as a table.
    table = [min(max(v + addition, 0), 255) if v < 128 else v for v in range(256)] * 3
    for image in _images():
        expected = Image.fromarray(image).point(table)
        _assert_close(color_ops.solarize_add(image, addition), expected, 0)


ENHANCE_OPS = [
    ("color", color_ops.color, ImageEnhance.Color),
    ("contrast", color_ops.contrast, ImageEnhance.Contrast),
    ("brightness", color_ops.brightness, ImageEnhance.Brightness),
    ("sharpness", color_ops.sharpness, ImageEnhance.Sharpness),
]


@pytest.mark.parametrize("name,ours,enhancer", ENHANCE_OPS, ids=[o[0] for o in ENHANCE_OPS])
@pytest.mark.parametrize("factor", [0.1, 0.46, 1.0, 1.54, 1.9])
def test_enhance_ops_match_pil(name, ours, enhancer, factor):
    for image in _images():
        expected = enhancer(Image.fromarray(image)).enhance(factor)
        _assert_close(ours(image, factor), expected, 1)


def test_grayscale_matches_pil_exactly():
    for image in _images():
        _assert_close(color_ops.grayscale(image), Image.fromarray(image).convert("L"), 0)


def test_posterize_rejects_bits_out_of_range():
    for bits in (0, 9):
        with pytest.raises(ValueError, match="bits must be in"):
            color_ops.posterize(_images()[0], bits)
