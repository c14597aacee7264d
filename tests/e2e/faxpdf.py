"""The page images of a PDF made by `ari_app.fax.convert` (CCITT G4 image per page), decoded
with Pillow so a test can look at what a fax put on paper."""

from __future__ import annotations

import io
import re
import struct

from PIL import Image

IMAGE = re.compile(rb"/Subtype /Image\s*/Width (\d+)\s*/Height (\d+)\s*/Filter \[ /CCITTFaxDecode \]"
                   rb"\s*/DecodeParms \[ <<\s*/K -1\s*/BlackIs1 (true|false).*?/Length (\d+)\s*>>stream\n", re.DOTALL)


def page_images(pdf: bytes) -> list[Image.Image]:
    """Each page's image, black as 0 (mode "1")."""
    pages = []
    for found in IMAGE.finditer(pdf):
        width, height, length = int(found[1]), int(found[2]), int(found[4])
        data = pdf[found.end():found.end() + length]
        pages.append(_decode(width, height, data, black_is_1=found[3] == b"true"))
    return pages


def _decode(width: int, height: int, data: bytes, *, black_is_1: bool) -> Image.Image:
    # A one-strip TIFF around the G4 data: header, the data, then the directory. A decoder gives
    # bit 0 for a run coded "white"; PDF turns that into a sample of 0 when BlackIs1 is true,
    # which DeviceGray shows black: so the photometric is MinIsBlack then, else WhiteIsZero.
    tags = [(256, 4, width), (257, 4, height), (258, 3, 1), (259, 3, 4), (262, 3, 1 if black_is_1 else 0),
            (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, len(data))]
    ifd_at = 8 + len(data) + (len(data) % 2)
    out = io.BytesIO()
    out.write(b"II*\x00" + struct.pack("<I", ifd_at) + data + b"\x00" * (len(data) % 2))
    out.write(struct.pack("<H", len(tags)))
    for tag, kind, value in tags:
        out.write(struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)))
    out.write(b"\x00\x00\x00\x00")
    image = Image.open(io.BytesIO(out.getvalue()))
    image.load()
    return image.convert("1")
