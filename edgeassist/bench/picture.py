"""The picture of the bench's image turns (`--image`): a file, or a generated test picture; a copy per turn.

The generated picture is the same on every run: gradients under seeded shapes and a light seeded
noise, 1024x768, as a PNG, so that it compresses about as badly as a photo and makes as many image
tokens as one. Pillow is imported inside the functions, as `edgeassist.images` does.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Final

from edgeassist.images import Picture, picture_from_bytes, read_image

GENERATED: Final = "generated"
"""What `--image` takes (and what a result records) for the generated test picture."""
TEST_PICTURE_SIZE: Final = (1024, 768)
"""Width and height of the generated test picture."""
_SHAPES = 48
_NOISE = 0.12  # share of the noise in each pixel: enough to keep PNG from squeezing it to nothing


def generate_picture(size: tuple[int, int] = TEST_PICTURE_SIZE, seed: int = 0) -> bytes:
    """A deterministic PNG of `size`: three gradients as its colours, seeded shapes on them, a light seeded noise."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    w, h = size
    across = Image.linear_gradient("L").rotate(90).resize(size)
    down = Image.linear_gradient("L").resize(size)
    ring = Image.radial_gradient("L").resize(size)
    im = Image.merge("RGB", (across, down, ring))
    draw = ImageDraw.Draw(im)

    def colour() -> tuple[int, int, int]:
        return rng.randrange(256), rng.randrange(256), rng.randrange(256)

    for i in range(_SHAPES):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randrange(20, w // 3), y0 + rng.randrange(20, h // 3)
        kind = i % 4
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour(), outline=colour(), width=3)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour())
        elif kind == 2:
            points = [(rng.randrange(x0, x1), rng.randrange(y0, y1)) for _ in range(rng.randrange(3, 7))]
            draw.polygon(points, fill=colour())
        else:
            draw.line((x0, y0, x1, y1), fill=colour(), width=rng.randrange(2, 9))
    noise = Image.frombytes("RGB", size, rng.randbytes(w * h * 3))
    im = Image.blend(im, noise, _NOISE)
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def bench_picture(source: str | Path) -> Picture:
    """The picture `--image` names: `generated` (the test picture), else the file, read and checked (ImageError)."""
    if str(source) == GENERATED:
        return picture_from_bytes(generate_picture(), "generated test picture")
    return read_image(source)


def copy_of(picture: Picture, tag: str) -> Picture:
    """The same picture under other bytes: `tag` written after the image's end, where decoders do not look.

    The engine keeps a picture's embeddings by its content (its SHA-256), so the same bytes in a
    second conversation would not reach the vision encoder: every image turn the bench times gets
    a copy of its own, with the same pixels, and the encoder reads each one.
    """
    return picture_from_bytes(picture.data + b"\0edgeassist bench: " + tag.encode(), picture.name)
