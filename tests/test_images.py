"""Pictures from outside (`edgeassist.images`): every way a file can be wrong is one ImageError line; good ones
come out as the engine's RGB pixels, turned as EXIF says, and are kept by content in a private folder.

Every picture here is a real file made by Pillow (or, for the bombs, a small file with a crafted header).
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, WebPImagePlugin
from unprivileged import said_as_nobody

from edgeassist import images
from edgeassist.errors import EdgeAssistError, ImageError, VisionUnavailableError
from edgeassist.images import (
    FORMATS,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    ImageStore,
    Picture,
    picture_from_bytes,
    read_image,
    rgb_pixels,
    thumbnail,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes, FIFOs and users")

RED = (255, 0, 0)
GREEN = (0, 160, 0)
BLUE = (0, 0, 255)


def encoded(im: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    """`im` saved in `fmt`, as bytes."""
    out = io.BytesIO()
    im.save(out, fmt, **kwargs)
    return out.getvalue()


def saved(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def near(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 12) -> bool:
    """Colours equal within what lossy compression moves them."""
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def pixel(width: int, data: bytes, x: int, y: int) -> tuple[int, int, int]:
    """The RGB pixel at (x, y) of packed RGB rows `width` pixels wide."""
    i = (y * width + x) * 3
    return data[i], data[i + 1], data[i + 2]


def error_of(fn: Callable[[], object]) -> str:
    """The one-line message of the ImageError `fn` raises."""
    with pytest.raises(ImageError) as caught:
        fn()
    message = str(caught.value)
    assert "\n" not in message and message == message.strip()
    return message


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims `width` x `height` RGB pixels, with a few bytes of image data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def webp_claiming(width: int, height: int) -> bytes:
    """A small extended WebP (VP8X) whose header claims a `width` x `height` canvas."""
    vp8x = b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def quadrants(size: tuple[int, int] = (40, 20)) -> Image.Image:
    """An RGB picture with its top-left quarter red and the rest green: which corner is where shows any turn."""
    im = Image.new("RGB", size, GREEN)
    im.paste(RED, (0, 0, size[0] // 2, size[1] // 2))
    return im


# -- the errors ------------------------------------------------------------------------------------------


def test_the_new_errors_have_their_own_exit_codes() -> None:
    assert issubclass(ImageError, EdgeAssistError) and ImageError.exit_code == 12
    assert issubclass(VisionUnavailableError, EdgeAssistError) and VisionUnavailableError.exit_code == 13


def test_importing_the_module_does_not_import_pillow() -> None:
    code = "import sys, edgeassist.images; print('PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


# -- good pictures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mode", "colour", "kwargs"),
    [
        ("JPEG", "RGB", RED, {"quality": 95}),
        ("JPEG", "L", (128,), {"quality": 95}),
        ("JPEG", "CMYK", (0, 255, 255, 0), {"quality": 95}),  # no cyan, full magenta and yellow: red
        ("PNG", "RGB", RED, {}),
        ("PNG", "L", (128,), {}),
        ("PNG", "LA", (128, 255), {}),
        ("PNG", "1", (1,), {}),
        ("WEBP", "RGB", RED, {"lossless": True}),
        ("WEBP", "RGBA", (255, 0, 0, 255), {"lossless": True}),
    ],
)
def test_each_accepted_kind_reads_and_comes_out_rgb(
    tmp_path: Path, fmt: str, mode: str, colour: tuple[int, ...], kwargs: dict[str, Any]
) -> None:
    data = encoded(Image.new(mode, (48, 32), colour), fmt, **kwargs)
    path = saved(tmp_path, f"pic.{fmt.lower()}", data)
    picture = read_image(path)
    assert (picture.format, picture.width, picture.height) == (fmt, 48, 32)
    assert picture.sha256 == hashlib.sha256(data).hexdigest()
    assert picture.data == data and picture.name == str(path)
    width, height, pixels = rgb_pixels(picture, 10_000)
    assert (width, height, len(pixels)) == (48, 32, 48 * 32 * 3)
    expected = {"L": (128, 128, 128), "LA": (128, 128, 128), "1": (255, 255, 255)}.get(mode, RED)
    assert near(pixel(width, pixels, 24, 16), expected)


def test_a_read_path_may_be_a_string(tmp_path: Path) -> None:
    path = saved(tmp_path, "a.png", encoded(Image.new("RGB", (3, 2)), "PNG"))
    assert read_image(str(path)) == read_image(path)


def test_transparency_is_laid_over_white(tmp_path: Path) -> None:
    im = Image.new("RGBA", (20, 10), (0, 0, 0, 0))  # the left half clear, the right half half-seen red
    im.paste((255, 0, 0, 128), (10, 0, 20, 10))
    width, _, pixels = rgb_pixels(picture_from_bytes(encoded(im, "PNG"), "alpha.png"), 10_000)
    assert pixel(width, pixels, 2, 5) == (255, 255, 255)
    assert near(pixel(width, pixels, 15, 5), (255, 127, 127), 2)


def test_a_palette_png_with_a_clear_colour(tmp_path: Path) -> None:
    im = Image.new("P", (20, 10), 0)
    im.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)  # 0: blue (made clear below), 1: red
    im.paste(1, (10, 0, 20, 10))
    plain = picture_from_bytes(encoded(im, "PNG"), "palette.png")
    width, _, pixels = rgb_pixels(plain, 10_000)
    assert pixel(width, pixels, 2, 5) == BLUE and pixel(width, pixels, 15, 5) == RED
    clear = picture_from_bytes(encoded(im, "PNG", transparency=0), "palette-clear.png")
    width, _, pixels = rgb_pixels(clear, 10_000)
    assert pixel(width, pixels, 2, 5) == (255, 255, 255) and pixel(width, pixels, 15, 5) == RED


def test_a_16_bit_grey_png_keeps_its_greys() -> None:
    im = Image.new("I;16", (4, 1))
    im.putdata([0, 16384, 32768, 65535])
    width, _, pixels = rgb_pixels(picture_from_bytes(encoded(im, "PNG"), "deep.png"), 100)
    greys = [pixel(width, pixels, x, 0)[0] for x in range(4)]
    assert near(tuple(greys), (0, 64, 128, 255), 2)  # a plain convert would clip all but black to white


def test_an_exif_turned_jpeg_comes_out_turned(tmp_path: Path) -> None:
    """Orientation 6: stored 40x20 with red top-left, shown turned a quarter clockwise: 20x40, red top-right."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(quadrants((40, 20)), "JPEG", quality=95, exif=exif.tobytes())
    picture = read_image(saved(tmp_path, "turned.jpg", data))
    assert (picture.width, picture.height) == (20, 40)
    width, height, pixels = rgb_pixels(picture, 10_000)
    assert (width, height) == (20, 40)
    assert near(pixel(width, pixels, 17, 2), RED)  # top right, as shown
    assert near(pixel(width, pixels, 2, 2), GREEN)  # top left was the stored bottom left
    assert near(pixel(width, pixels, 17, 37), GREEN)
    # Scaled down, the turn is the same.
    width, height, pixels = rgb_pixels(picture, 200)
    assert (width, height) == (10, 20)
    assert near(pixel(width, pixels, 8, 1), RED, 40) and near(pixel(width, pixels, 1, 1), GREEN, 40)
    small = thumbnail(picture, (8, 8))
    assert small.mode == "RGB" and small.size == (4, 8)
    assert near(small.getpixel((3, 0)), RED, 60)  # type: ignore[arg-type]


def test_a_thumbnail_fits_its_box_and_never_grows() -> None:
    picture = picture_from_bytes(encoded(quadrants((400, 100)), "PNG"), "wide.png")
    small = thumbnail(picture, (64, 64))
    assert small.mode == "RGB" and small.size == (64, 16)
    assert thumbnail(picture, (1000, 1000)).size == (400, 100)


def test_a_big_jpeg_scales_down_through_its_draft(tmp_path: Path) -> None:
    picture = picture_from_bytes(encoded(quadrants((1600, 1200)), "JPEG", quality=90), "big.jpg")
    width, height, pixels = rgb_pixels(picture, 40_000)
    assert width * height <= 40_000 and abs(width / height - 4 / 3) < 0.02
    assert near(pixel(width, pixels, 5, 5), RED) and near(pixel(width, pixels, width - 5, height - 5), GREEN)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_an_animated_picture_is_its_first_frame(fmt: str) -> None:
    first, second = Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), BLUE)
    kwargs: dict[str, Any] = {"lossless": True} if fmt == "WEBP" else {}
    data = encoded(first, fmt, save_all=True, append_images=[second], duration=100, **kwargs)
    picture = picture_from_bytes(data, f"moving.{fmt.lower()}")
    assert picture.format == fmt
    width, _, pixels = rgb_pixels(picture, 1000)
    assert pixel(width, pixels, 8, 8) == RED


def test_a_multi_picture_jpeg_is_a_jpeg() -> None:
    data = encoded(Image.new("RGB", (16, 16), RED), "MPO", save_all=True, append_images=[Image.new("RGB", (16, 16))])
    picture = picture_from_bytes(data, "camera.jpg")
    assert picture.format == "JPEG"
    width, _, pixels = rgb_pixels(picture, 1000)
    assert near(pixel(width, pixels, 8, 8), RED)


def test_pictures_are_equal_by_their_bytes() -> None:
    data = encoded(Image.new("RGB", (4, 4), RED), "PNG")
    a, b = picture_from_bytes(data, "a.png"), picture_from_bytes(data, "b.png")
    other = picture_from_bytes(encoded(Image.new("RGB", (4, 4), BLUE), "PNG"), "a.png")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != other
    assert "data" not in repr(a) and a.sha256 in repr(a)
    with pytest.raises(AttributeError):
        a.name = "c.png"  # type: ignore[misc]


def test_bytes_given_as_a_bytearray_are_copied() -> None:
    data = bytearray(encoded(Image.new("RGB", (4, 4), RED), "PNG"))
    picture = picture_from_bytes(data, "paste")  # type: ignore[arg-type]
    data[:] = b"\0" * len(data)
    assert type(picture.data) is bytes and picture.data.startswith(b"\x89PNG")


# -- scaling ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "cap", "expected"),
    [
        ((300, 100), 1_000_000, (300, 100)),  # never up
        ((300, 100), 30_000, (300, 100)),  # exactly at the cap
        ((300, 100), 3_000, (94, 31)),
        ((1000, 1), 100, (100, 1)),  # a line keeps one row
        ((1, 1000), 100, (1, 100)),
        ((7, 5), 1, (1, 1)),
    ],
)
def test_scaling_keeps_the_shape_under_the_cap(size: tuple[int, int], cap: int, expected: tuple[int, int]) -> None:
    picture = picture_from_bytes(encoded(Image.new("RGB", size, RED), "PNG"), "scale.png")
    width, height, pixels = rgb_pixels(picture, cap)
    assert (width, height) == expected
    assert width * height <= cap and len(pixels) == width * height * 3


def test_a_cap_under_one_pixel_is_a_programming_error() -> None:
    picture = picture_from_bytes(encoded(Image.new("RGB", (2, 2)), "PNG"), "a.png")
    with pytest.raises(ValueError):
        rgb_pixels(picture, 0)


@given(w=st.integers(1, 100_000), h=st.integers(1, 100_000), cap=st.integers(1, 50_000_000))
def test_the_fitted_size_is_under_the_cap_never_bigger_and_the_same_shape(w: int, h: int, cap: int) -> None:
    nw, nh = images._fit((w, h), cap)
    assert 1 <= nw <= w and 1 <= nh <= h
    if w * h <= cap:
        assert (nw, nh) == (w, h)
    else:
        assert nw * nh <= cap
        if nw > 1 and nh > 1:  # the shape, to within a pixel each way
            assert abs(nw * h - nh * w) <= max(w, h)


# -- bad files -------------------------------------------------------------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    assert error_of(lambda: read_image(path)) == f"cannot read image '{path}': no such file"


def test_a_path_holding_a_nul_is_one_line_not_a_value_error() -> None:
    assert "not a usable path" in error_of(lambda: read_image("photo\0.png"))


def test_a_folder(tmp_path: Path) -> None:
    assert error_of(lambda: read_image(tmp_path)) == f"cannot read image '{tmp_path}': it is a folder, not a file"


def test_an_empty_file(tmp_path: Path) -> None:
    path = saved(tmp_path, "empty.png", b"")
    assert error_of(lambda: read_image(path)) == f"image '{path}' is empty (0 bytes)"
    assert error_of(lambda: picture_from_bytes(b"", "stdin")) == "image 'stdin' is empty (0 bytes)"


def test_a_text_file(tmp_path: Path) -> None:
    path = saved(tmp_path, "notes.jpg", b"just some words\n")
    assert error_of(lambda: read_image(path)) == f"'{path}' is not an image (JPEG, PNG or WebP)"


@pytest.mark.parametrize(("fmt", "said"), [("GIF", "a GIF"), ("BMP", "a BMP"), ("TIFF", "a TIFF"), ("ICO", "an ICO")])
def test_an_image_in_another_format_is_named(tmp_path: Path, fmt: str, said: str) -> None:
    path = saved(tmp_path, f"pic.{fmt.lower()}", encoded(Image.new("RGB", (16, 16), RED), fmt))
    message = error_of(lambda: read_image(path))
    assert message == f"image '{path}' is {said}: edgeassist reads JPEG, PNG or WebP; convert it first"


@pytest.mark.parametrize(
    ("head", "said"),
    [
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "a HEIC"),  # an iPhone photo
        (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf", "an AVIF"),  # Pillow may read AVIF; edgeassist does not
        (b"\xff\x0a\xfa\x7f\x01\x90\x08", "a JPEG XL"),
        (b"8BPS\0\x01\0\0\0\0\0\0", "a PSD"),
    ],
)
def test_a_format_pillow_is_never_asked_to_parse_is_named_from_its_first_bytes(head: bytes, said: str) -> None:
    message = error_of(lambda: picture_from_bytes(head + b"\0" * 64, "photo"))
    assert message == f"image 'photo' is {said}: edgeassist reads JPEG, PNG or WebP; convert it first"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_truncated_file(tmp_path: Path, fmt: str) -> None:
    im = Image.effect_noise((256, 256), 64).convert("RGB")  # noise: the pixel data is most of the file
    data = encoded(im, fmt, quality=90) if fmt != "PNG" else encoded(im, fmt)
    path = saved(tmp_path, f"cut.{fmt.lower()}", data[: len(data) * 2 // 3])
    message = error_of(lambda: read_image(path))
    assert message == f"image '{path}' is corrupt or truncated: save it again, or pick another file"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_a_corrupt_header_in_an_accepted_format_is_corrupt_not_foreign() -> None:
    data = bytearray(encoded(Image.new("RGB", (16, 16), RED), "PNG"))
    data[16:24] = b"\xff" * 8  # the size in the IHDR, now nonsense (and the CRC wrong)
    assert "is corrupt or truncated" in error_of(lambda: picture_from_bytes(bytes(data), "bad.png"))


def test_a_name_with_a_newline_stays_on_one_line() -> None:
    message = error_of(lambda: picture_from_bytes(b"plain text", "evil\nname.png"))
    assert message == "'evil?name.png' is not an image (JPEG, PNG or WebP)"


@posix_only
def test_a_file_the_user_may_not_read() -> None:
    """As root (CI) permissions would not hold: the read runs in a child that drops to `nobody` first, in a
    folder outside pytest's (which is the owner's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="edgeassist-image-perm-"))
    try:
        folder.chmod(0o755)
        path = saved(folder, "locked.png", encoded(Image.new("RGB", (4, 4)), "PNG"))
        path.chmod(0o000)
        said = _read_as_another_user(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert said == f"refused: cannot read image '{path}': permission denied"


def _read_as_another_user(path: Path) -> str:
    """What `read_image` says of `path`, asked in a child process that cannot override file permissions."""
    return said_as_nobody(lambda: read_image(path).format, ImageError)


def test_too_big_a_file_is_refused_from_its_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: no time, no disk
    expected = f"image '{path}' is larger than 50.0 MB, the most edgeassist reads; scale it down or save it compressed"
    assert error_of(lambda: read_image(path)) == expected
    assert "is larger than 50.0 MB" in error_of(lambda: picture_from_bytes(b"\0" * (MAX_FILE_BYTES + 1), "paste"))


@posix_only
def test_a_stream_is_read_no_further_than_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipe has no size to check first: reading stops one byte past the cap, however much more there is."""
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    r, w = os.pipe()
    sent = 0

    def write() -> None:
        nonlocal sent
        try:
            while sent < 1_000_000:
                sent += os.write(w, b"\xff" * 4096)
        except BrokenPipeError:
            pass  # the reader stopped, as it should
        finally:
            os.close(w)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        message = error_of(lambda: read_image(f"/dev/fd/{r}"))
    finally:
        os.close(r)
        writer.join(10)
    assert "is larger than 1.0 KB" in message
    assert sent < 1_000_000


@posix_only
def test_a_fifo_nobody_writes_to_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert error_of(lambda: read_image(fifo)) == f"image '{fifo}' is empty (0 bytes)"
    assert time.monotonic() - started < 5


# -- decompression bombs ---------------------------------------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record any attempt to decode pixels (which a refused bomb must never reach)."""
    attempts: list[str] = []

    def load(self: Image.Image) -> None:
        attempts.append(type(self).__name__)
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", load)
    return attempts


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (png_claiming(8000, 6000), "is 8000x6000 (48 megapixels): the most edgeassist reads is 40 megapixels"),
        (png_claiming(12_000, 12_000), "has more than 40 megapixels, the most edgeassist reads"),  # Pillow warns
        (png_claiming(100_000, 100_000), "has more than 40 megapixels, the most edgeassist reads"),  # Pillow raises
        (webp_claiming(16_000, 16_000), "is 16000x16000 (256 megapixels): the most edgeassist reads is 40 megapixels"),
    ],
)
def test_a_huge_header_is_refused_before_decoding(data: bytes, said: str, no_decoding: list[str]) -> None:
    assert len(data) < 200
    started = time.monotonic()
    message = error_of(lambda: picture_from_bytes(data, "bomb"))
    assert time.monotonic() - started < 1
    assert message.startswith("image 'bomb' ") and said in message and message.endswith("; scale it down first")
    assert no_decoding == []


def test_the_pixel_cap_is_checked_from_the_header_without_pillows_own_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # someone turned Pillow's check off: ours still holds
    message = error_of(lambda: picture_from_bytes(png_claiming(100_000, 100_000), "bomb.png"))
    assert "is 100000x100000 (10000 megapixels)" in message
    assert MAX_PIXELS == 40_000_000


@posix_only
def test_a_bomb_takes_no_memory() -> None:
    """In a child limited to 1 GiB of address space: decoding 100000x100000 would need 30 GB."""
    code = (
        "import resource, sys\n"
        "from edgeassist.errors import ImageError\n"
        "from edgeassist.images import picture_from_bytes\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "try:\n    picture_from_bytes(sys.stdin.buffer.read(), 'bomb')\nexcept ImageError as e:\n    print(e)\n"
    )
    if resource.getrlimit(resource.RLIMIT_AS)[0] not in (resource.RLIM_INFINITY,) and resource.getrlimit(
        resource.RLIMIT_AS
    )[0] < (1 << 30):
        pytest.skip("the address space is already limited below 1 GiB")
    for data in (png_claiming(100_000, 100_000), png_claiming(8000, 6000), webp_claiming(16_000, 16_000)):
        out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        assert b"megapixels" in out.stdout


# -- random bytes ----------------------------------------------------------------------------------------

_SAMPLES = [
    encoded(Image.effect_noise((24, 16), 50).convert("RGB"), "JPEG", quality=80),
    encoded(Image.effect_noise((24, 16), 50).convert("RGBA"), "PNG"),
    encoded(Image.effect_noise((24, 16), 50).convert("RGB"), "WEBP", quality=80),
    encoded(Image.effect_noise((24, 16), 50).convert("RGBA"), "WEBP", lossless=True),
]
_HEADS = [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBP", b"RIFF\0\0\0\0WEBPVP8X", b"GIF89a", b"BM"]


@st.composite
def image_like_bytes(draw: st.DrawFn) -> bytes:
    """Random bytes, bytes that start like an image, and real small images cut short or with bytes changed."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.binary(max_size=512))
    if kind == 1:
        return draw(st.sampled_from(_HEADS)) + draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(_SAMPLES)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=image_like_bytes())
def test_any_bytes_are_a_picture_or_an_image_error(data: bytes) -> None:
    try:
        picture = picture_from_bytes(data, "random")
    except ImageError:
        return
    width, height, pixels = rgb_pixels(picture, 100)
    assert width * height <= 100 and len(pixels) == width * height * 3
    assert thumbnail(picture, (8, 8)).mode == "RGB"


# -- the store -------------------------------------------------------------------------------------------


def a_picture(colour: tuple[int, int, int] = RED, fmt: str = "JPEG") -> Picture:
    return picture_from_bytes(encoded(Image.new("RGB", (8, 8), colour), fmt), f"pic.{fmt.lower()}")


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_a_picture_is_kept_under_its_hash(tmp_path: Path, fmt: str, ext: str) -> None:
    store = ImageStore(tmp_path / "images")
    picture = a_picture(fmt=fmt)
    assert store.get(picture.sha256) is None
    path = store.add(picture)
    assert path == tmp_path / "images" / f"{picture.sha256}.{ext}" == store.path_for(picture.sha256, fmt)
    assert path.read_bytes() == picture.data
    assert store.get(picture.sha256) == path
    assert os.listdir(tmp_path / "images") == [path.name]  # no temporary file left behind


@posix_only
def test_the_store_is_private(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "images"
    path = ImageStore(folder).add(a_picture())
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@posix_only
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_the_store_is_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = ImageStore(tmp_path / "images").add(a_picture())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_adding_twice_leaves_the_file_alone(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    picture = a_picture()
    path = store.add(picture)
    before = path.stat()
    assert store.add(picture_from_bytes(picture.data, "again.jpg")) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@posix_only
def test_adding_tightens_a_kept_file_left_open(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    picture = a_picture()
    path = store.add(picture)
    path.chmod(0o644)
    store.add(picture)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("damage", ["changed", "half-written", "empty"])
def test_a_damaged_file_is_absent_and_written_again(tmp_path: Path, damage: str) -> None:
    store = ImageStore(tmp_path)
    picture = a_picture()
    path = store.add(picture)
    path.write_bytes({"changed": b"x" + picture.data[1:], "half-written": picture.data[:20], "empty": b""}[damage])
    assert store.get(picture.sha256) is None
    assert store.add(picture) == path
    assert path.read_bytes() == picture.data and store.get(picture.sha256) == path


@posix_only
def test_a_link_in_place_of_a_kept_file_is_absent_and_replaced(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    picture = a_picture()
    elsewhere = saved(tmp_path, "elsewhere.jpg", picture.data)
    (tmp_path / "images").mkdir()
    store.path_for(picture.sha256, "JPEG").symlink_to(elsewhere)
    assert store.get(picture.sha256) is None
    path = store.add(picture)
    assert not path.is_symlink() and path.read_bytes() == picture.data
    assert elsewhere.read_bytes() == picture.data


def test_pictures_of_different_bytes_are_kept_apart(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    red, blue = store.add(a_picture(RED)), store.add(a_picture(BLUE))
    assert red != blue and len(os.listdir(tmp_path)) == 2


@pytest.mark.parametrize(
    "bad",
    ["../x", "../" + "a" * 61, "A" * 64, "a" * 63, "a" * 65, "g" * 64, "a" * 64 + "\n", "", "/" + "a" * 63, "a" * 32],
)
def test_anything_but_a_sha256_is_refused(tmp_path: Path, bad: str) -> None:
    store = ImageStore(tmp_path)
    shown = bad.replace("\n", "?")
    expected = f"'{shown}' is not an image's SHA-256 (64 lowercase hex digits)"
    assert error_of(lambda: store.path_for(bad, "PNG")) == expected
    assert error_of(lambda: store.get(bad)) == expected


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    message = error_of(lambda: ImageStore(tmp_path).path_for("a" * 64, "GIF"))
    assert message == "cannot keep an image in format 'GIF': only JPEG, PNG or WebP"


def test_a_picture_whose_bytes_do_not_match_its_hash_is_not_kept(tmp_path: Path) -> None:
    picture = a_picture()
    forged = Picture(sha256="b" * 64, format="JPEG", width=8, height=8, data=picture.data, name="forged.jpg")
    message = error_of(lambda: ImageStore(tmp_path).add(forged))
    assert message == "image 'forged.jpg' does not match its SHA-256: read it again"
    assert os.listdir(tmp_path) == []


@posix_only
def test_a_store_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    blocker = saved(tmp_path, "images", b"a file where the folder should be")
    message = error_of(lambda: ImageStore(blocker).add(a_picture()))
    assert message == f"cannot keep image 'pic.jpeg' in {blocker}: not a directory"
