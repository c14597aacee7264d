"""A received fax (a TIFF of one or more bilevel pages, often with non-square pixels) as a PDF."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageSequence

# A fax's horizontal resolution (dots per inch) when the file does not say.
FAX_DPI = 204.0


class ConversionError(Exception):
    """The TIFF is missing, empty or not an image."""


def tiff_to_pdf(tiff: Path) -> tuple[bytes, int]:
    """The PDF and its page count. Pages with rectangular pixels (fax "normal" resolution is
    204 x 98 dpi) are stretched to square ones, so the page keeps its proportions."""
    try:
        with Image.open(tiff) as image:
            pages = [_square(frame) for frame in ImageSequence.Iterator(image)]
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ConversionError(f"{tiff.name}: {exc}") from exc
    if not pages:
        raise ConversionError(f"{tiff.name}: no page")
    out = io.BytesIO()
    first, *rest = [page for page, _ in pages]
    first.save(out, "PDF", save_all=True, append_images=rest, resolution=pages[0][1])
    return out.getvalue(), len(pages)


def _square(frame: Image.Image) -> tuple[Image.Image, float]:
    dpi = frame.info.get("dpi") or (FAX_DPI, FAX_DPI)
    x, y = (float(v) or FAX_DPI for v in dpi)
    page = frame.convert("1") if frame.mode not in ("1", "L") else frame.copy()
    if abs(x - y) > 1:
        page = page.resize((page.width, max(1, round(page.height * x / y))), Image.Resampling.NEAREST)
    return page, x
