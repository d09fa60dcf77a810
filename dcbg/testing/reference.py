"""The real measurement the synthetic image model is built from

The bundled CytoShot recording :data:`REFERENCE_MEASUREMENT` provides the
background image (fitted to other image shapes by :func:`fit_background`),
the cells (background-free cut-outs of its events) and the HDF5 metadata
of the files :func:`dcbg.testing.make_synthetic_measurement` writes.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import numpy as np

#: real measurement the synthetic frames are built from
REFERENCE_MEASUREMENT = (
    pathlib.Path(__file__).resolve().parent.parent
    / "data"
    / "cytoshot_2024_80x320.rtdc"
)


#: masks smaller than this (in pixels) are segmentation debris, not cells
_MIN_CELL_AREA = 100
#: width (px) over which a cell cut-out fades to zero outside its mask;
#: keeps the bright diffraction rim around the cell
_HALO_PX = 4
#: half height (rows) of the channel-centre band that taller backgrounds
#: repeat: the centre rows hold no wall structure, so repeating them
#: widens the channel without seams
_CENTRE_BAND_HALF_ROWS = 8


@dataclasses.dataclass(frozen=True)
class _Reference:
    """Content extracted once from the reference measurement"""

    #: background image (float32, 80x320)
    background: np.ndarray
    #: cell cut-outs: background-free residuals (float32, bounding boxes)
    sprites: tuple[np.ndarray, ...]
    #: HDF5 root attributes (str values decoded)
    attrs: dict


@functools.lru_cache(maxsize=1)
def load_reference() -> _Reference:
    import h5py
    from scipy import ndimage

    from ..io.conventions import decode_text, ensure_hdf5_filters

    # the reference's images are Zstandard-compressed
    ensure_hdf5_filters()
    with h5py.File(REFERENCE_MEASUREMENT, "r") as h5:
        events = h5["events"]
        image = events["image"][:].astype(np.float32)
        image_bg = events["image_bg"][:].astype(np.float32)
        mask = events["mask"][:] > 0
        attrs = {
            key: decode_text(val) if isinstance(val, bytes) else val
            for key, val in h5.attrs.items()
        }

    sprites = []
    for img, img_bg, msk in zip(image, image_bg, mask, strict=True):
        if msk.sum() < _MIN_CELL_AREA:
            continue
        resid = img - img_bg
        # The residual also carries the flicker offset of that frame; the
        # generator adds its own flicker, so remove it from the cell.
        resid -= np.median(resid[~msk])
        dist = ndimage.distance_transform_edt(~msk)
        weight = np.clip(1 - dist / _HALO_PX, 0, 1)
        ys, xs = np.nonzero(weight > 0)
        region = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        sprites.append(np.ascontiguousarray((resid * weight)[region]))

    return _Reference(
        background=image_bg[0].copy(),
        sprites=tuple(sprites),
        attrs=attrs,
    )


def fit_background(background: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crop or extend a channel background image to another shape

    Parameters
    ----------
    background: np.ndarray
        2D background image; the channel runs along axis 1 (x) and the
        channel walls are near the first and last rows.
    shape: tuple of int
        Target shape ``(height, width)`` in pixels.

    Returns
    -------
    np.ndarray
        Background image of the requested shape (same dtype). Smaller
        shapes are centred crops. Wider images are mirror-tiled along x,
        which avoids seams. Taller images get extra channel-centre rows
        inserted in the middle, so the walls stay at the image borders.
    """
    height, width = (int(s) for s in shape)
    if height < 1 or width < 1:
        raise ValueError(f"Invalid image shape {shape}")
    bh, bw = background.shape
    if height <= bh:
        r0 = (bh - height) // 2
        rows = np.arange(r0, r0 + height)
    else:
        centre = bh // 2
        band = np.arange(
            max(0, centre - _CENTRE_BAND_HALF_ROWS),
            min(bh, centre + _CENTRE_BAND_HALF_ROWS),
        )
        pingpong = np.concatenate([band, band[::-1]])
        fill = pingpong[np.arange(height - bh) % pingpong.size]
        rows = np.concatenate([np.arange(centre), fill, np.arange(centre, bh)])
    if width <= bw:
        c0 = (bw - width) // 2
        cols = np.arange(c0, c0 + width)
    else:
        mirror = np.concatenate([np.arange(bw), np.arange(bw)[::-1]])
        cols = mirror[np.arange(width) % mirror.size]
    return np.ascontiguousarray(background[np.ix_(rows, cols)])
