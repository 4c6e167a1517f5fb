"""NumPy brute-force references shared by tests of several packages (importable from any test:
pytest puts this directory on sys.path for conftest.py)."""

import numpy as np


def crop_and_resize_mask(mask, box, size):
    """Bilinear samples of `mask` [h, w] at the cell centres of a size x size grid over `box`
    (pixel edges), clamping sample positions to the pixel centres of the border."""
    height, width = mask.shape

    def positions(low, high, limit):
        coords = low + (np.arange(size) + 0.5) * (high - low) / size - 0.5
        coords = np.clip(coords, 0.0, limit - 1.0)
        lower = np.floor(coords).astype(int)
        upper = np.minimum(lower + 1, limit - 1)
        return lower, upper, coords - lower

    y0, y1, wy = positions(box[0], box[2], height)
    x0, x1, wx = positions(box[1], box[3], width)
    m = mask.astype(np.float64)
    top = m[y0][:, x0] * (1 - wx) + m[y0][:, x1] * wx
    bottom = m[y1][:, x0] * (1 - wx) + m[y1][:, x1] * wx
    return top * (1 - wy[:, None]) + bottom * wy[:, None]


def paste_mask(mask, box, height, width, threshold=0.5):
    """Per-pixel bilinear sampling of the zero-bordered mask, by gathering 4 neighbours."""
    mask_h, mask_w = mask.shape
    ymin, xmin, ymax, xmax = box
    padded = np.pad(np.asarray(mask, np.float64), 1)  # zero border: index 0 and mask_h + 1
    rows = (np.arange(height) + 0.5 - ymin) / (ymax - ymin) * mask_h - 0.5 + 1
    cols = (np.arange(width) + 0.5 - xmin) / (xmax - xmin) * mask_w - 0.5 + 1
    rows = np.clip(rows, 0, mask_h + 1)
    cols = np.clip(cols, 0, mask_w + 1)
    r0 = np.minimum(np.floor(rows).astype(int), mask_h)
    c0 = np.minimum(np.floor(cols).astype(int), mask_w)
    fr = (rows - r0)[:, None]
    fc = (cols - c0)[None, :]
    r0, c0 = r0[:, None], c0[None, :]
    value = (
        (1 - fr) * (1 - fc) * padded[r0, c0]
        + (1 - fr) * fc * padded[r0, c0 + 1]
        + fr * (1 - fc) * padded[r0 + 1, c0]
        + fr * fc * padded[r0 + 1, c0 + 1]
    )
    return (value >= threshold).astype(np.uint8)


def conv_same_np(x, kernel, bias):
    """'same' convolution of odd square kernels by brute force; x [n, h, w, c]."""
    k = kernel.shape[0]
    pad = k // 2
    n, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for i in range(h):
        for j in range(w):
            out[:, i, j] = np.tensordot(
                xp[:, i : i + k, j : j + k], kernel, axes=([1, 2, 3], [0, 1, 2])
            )
    return out + bias
