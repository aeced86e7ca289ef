"""Pictures from outside: the one place an image a user attaches is read, checked, normalised and kept.

Every picture (`ask --image FILE`, the chat app's attach key, a pasted path, stdin) becomes a
`Picture` here, or one `ImageError` line: a missing or unreadable file, something that is not a
JPEG, PNG or WebP, a corrupt or truncated file, too many pixels, too big a file. A `Picture` has
been decoded in full once, so what the engine later decodes again is known to be whole.

The pixel count is checked from the header before anything is decoded, so a small file that claims
a huge canvas (a decompression bomb) is refused without the memory it asks for. Pillow only ever
parses JPEG, PNG and WebP: other formats are recognised by their first bytes, to name them.

Pillow is imported inside the functions that need it: importing this module stays cheap, and
`edgeassist --help` with it.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgeassist.errors import ImageError
from edgeassist.private import FILE_MODE, private_dir, private_file
from edgeassist.units import format_bytes

if TYPE_CHECKING:
    from PIL import Image

FORMATS = ("JPEG", "PNG", "WEBP")
"""The formats edgeassist reads, as Pillow names them."""
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
"""The file extension each format is kept under in an `ImageStore`."""
MAX_FILE_BYTES = 50_000_000
"""The largest image file read (50 MB): a bigger one is refused after reading this much and one byte more."""
MAX_PIXELS = 40_000_000
"""The most pixels an image may have (40 megapixels), checked from its header before it is decoded."""

_ACCEPTED = "JPEG, PNG or WebP"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_WHITE = (255, 255, 255, 255)


@dataclass(frozen=True)
class Picture:
    """An image that has been read and checked: whole, in an accepted format, within the limits.

    Two pictures are equal when their bytes are: equality and hashing look at `sha256` alone.
    """

    sha256: str
    """The SHA-256 of the original file's bytes, in lowercase hex: the picture's identity."""
    format: str = field(compare=False)
    """One of `FORMATS` (a camera's multi-picture JPEG is a JPEG: its first picture is the one used)."""
    width: int = field(compare=False)
    """The width as displayed: after the EXIF orientation is applied."""
    height: int = field(compare=False)
    """The height as displayed: after the EXIF orientation is applied."""
    data: bytes = field(repr=False, compare=False)
    """The original file's bytes, unchanged."""
    name: str = field(compare=False)
    """The name it came with (a path as given, or a label such as `stdin`), for messages."""


def read_image(path: Path | str) -> Picture:
    """Read and check the image file at `path`. Raises ImageError, naming the file, when it cannot be used."""
    name = str(path)
    if "\0" in name:  # (the OS cannot take it: a ValueError from open, not a person's one line)
        raise ImageError(f"cannot read image {_shown(name)}: not a usable path (it holds a NUL)")
    return picture_from_bytes(_read_capped(Path(path), name), name)


def picture_from_bytes(data: bytes, name: str) -> Picture:
    """Check `data` as an image called `name` (stdin, a paste). Raises ImageError when it cannot be used."""
    data = bytes(data)  # a Picture keeps its bytes: a caller's bytearray must not change under it
    if not data:
        raise ImageError(f"image {_shown(name)} is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise _too_big(name)
    with _opened(data, name) as im, _bad_data(name):
        fmt = _format_of(im)
        im.load()  # decoded in full once, so a truncated or corrupt file is refused here, not in the engine
        orientation = _orientation(im)
        width, height = im.size
    if orientation in (5, 6, 7, 8):  # these turn the picture a quarter: width and height swap when shown
        width, height = height, width
    return Picture(
        sha256=hashlib.sha256(data).hexdigest(), format=fmt, width=width, height=height, data=data, name=name
    )


def rgb_pixels(picture: Picture, max_pixels: int) -> tuple[int, int, bytes]:
    """The picture as shown, in RGB, scaled down (never up) to at most `max_pixels`: (width, height, pixels).

    The pixels are packed row by row, three bytes each (width * height * 3 bytes): what llama.cpp's
    `mtmd_bitmap_init(nx, ny, data)` takes. Transparency is laid over white. Raises ImageError.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, not {max_pixels}")
    with _opened(picture.data, picture.name) as im, _bad_data(picture.name):
        image = _rgb(im, _fit(im.size, max_pixels))
    return image.width, image.height, image.tobytes()


def thumbnail(picture: Picture, box: tuple[int, int]) -> Image.Image:
    """The picture as shown, in RGB, scaled down (never up) to fit in `box` (width, height), for the chat app.

    Raises ImageError.
    """
    from PIL import Image

    bw, bh = max(1, box[0]), max(1, box[1])
    with _opened(picture.data, picture.name) as im, _bad_data(picture.name):
        # Fit the box as shown: a picture turned a quarter by EXIF fits the box turned too.
        turned = _orientation(im) in (5, 6, 7, 8)
        w, h = im.size
        sw, sh = (h, w) if turned else (w, h)
        scale = min(1.0, bw / sw, bh / sh)
        target = max(1, round(sw * scale)), max(1, round(sh * scale))
        image = _rgb(im, (target[1], target[0]) if turned else target)
    if image.width > bw or image.height > bh:  # rounding: never a pixel outside the box
        image.thumbnail((bw, bh), Image.Resampling.LANCZOS)
    return image


class ImageStore:
    """Pictures kept with the chats, by content: `<sha256>.<ext>` in one private folder (0700, files 0600).

    A file whose bytes no longer hash to its name (changed, or half-written by a crash) counts as
    absent, and `add` writes it again.
    """

    def __init__(self, folder: Path) -> None:
        """Keep pictures in `folder`; it is made (0700) by the first `add`."""
        self.folder = Path(folder)

    def path_for(self, sha256: str, format: str) -> Path:
        """Where a picture with this hash and format is kept. Raises ImageError for anything but a SHA-256 in hex.

        Only 64 lowercase hex digits pass, so no name can lead out of the folder.
        """
        if not _SHA256.fullmatch(sha256):
            raise ImageError(f"{_shown(sha256)} is not an image's SHA-256 (64 lowercase hex digits)")
        ext = EXTENSIONS.get(format)
        if ext is None:
            raise ImageError(f"cannot keep an image in format {_shown(format)}: only {_ACCEPTED}")
        return self.folder / f"{sha256}.{ext}"

    def get(self, sha256: str) -> Path | None:
        """The kept file of the picture with this hash; None if there is none or it was changed. Raises ImageError."""
        for fmt in FORMATS:
            path = self.path_for(sha256, fmt)
            if _file_sha256(path) == sha256:
                return path
        return None

    def add(self, picture: Picture) -> Path:
        """Keep `picture` (written whole, or not at all) and return its path; one already kept is left as it is.

        Raises ImageError when the folder cannot be written.
        """
        path = self.path_for(picture.sha256, picture.format)
        if hashlib.sha256(picture.data).hexdigest() != picture.sha256:
            raise ImageError(f"image {_shown(picture.name)} does not match its SHA-256: read it again")
        try:
            private_dir(self.folder)
            if _file_sha256(path) == picture.sha256:
                private_file(path)  # kept already; made private in case an older copy was not
                return path
            _write_whole(path, picture.data)
        except OSError as e:
            raise ImageError(f"cannot keep image {_shown(picture.name)} in {self.folder}: {_reason(e)}") from e
        return path


# -- reading ---------------------------------------------------------------------------------------------


def _read_capped(path: Path, name: str) -> bytes:
    """The file's bytes, reading at most MAX_FILE_BYTES + 1 of them. Raises ImageError."""
    # O_NONBLOCK: opening a FIFO nobody writes to must not hang; reading it then finds it empty.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ImageError(f"cannot read image {_shown(name)}: no such file") from None
    except PermissionError:
        if path.is_dir():  # Windows refuses to open a folder with a permission error
            raise _folder(name) from None
        raise ImageError(f"cannot read image {_shown(name)}: permission denied") from None
    except OSError as e:
        raise ImageError(f"cannot read image {_shown(name)}: {_reason(e)}") from e
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _folder(name)
        if stat.S_ISREG(st.st_mode):
            if st.st_size > MAX_FILE_BYTES:
                raise _too_big(name)  # known from its size: nothing read
        elif hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # a pipe (`--image <(curl ...)`): wait for what its writer sends
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_FILE_BYTES + 1)  # one more byte than allowed tells a file that grew past the cap
    except IsADirectoryError:
        raise _folder(name) from None
    except OSError as e:
        raise ImageError(f"cannot read image {_shown(name)}: {_reason(e)}") from e
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise _too_big(name)
    return data


@contextmanager
def _opened(data: bytes, name: str) -> Iterator[Image.Image]:
    """Pillow's image of `data`, its header read and its pixel count checked, nothing decoded. Raises ImageError."""
    from PIL import Image

    sniffed = _sniff(data)
    if sniffed is not None and sniffed not in FORMATS:
        raise ImageError(f"image {_shown(name)} is {sniffed}: edgeassist reads {_ACCEPTED}; convert it first")
    if sniffed == "WEBP":
        # Pillow's WebP decoder sets aside memory for the whole canvas as it opens: check the size first.
        claimed = _webp_size(data)
        if claimed is not None:
            _check_pixels(claimed, name)
    try:
        # Pillow warns of a big image and raises past twice that; both are refused here as one, so raise on both.
        # (catch_warnings changes process-wide filters for its moment; the filter added matches only this warning.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(
            f"image {_shown(name)} has more than {_megapixels(MAX_PIXELS)} megapixels, the most edgeassist reads;"
            " scale it down first"
        ) from e
    except MemoryError as e:
        raise _no_memory(name) from e
    except Exception as e:  # not identified, or a header Pillow cannot parse (it raises many kinds)
        if sniffed in FORMATS:
            raise _corrupt(name) from e
        raise ImageError(f"{_shown(name)} is not an image ({_ACCEPTED})") from e
    try:
        _check_pixels(im.size, name)
        yield im
    finally:
        im.close()


@contextmanager
def _bad_data(name: str) -> Iterator[None]:
    """Turn whatever Pillow raises while decoding into one ImageError: the data is bad, however it says so."""
    try:
        yield
    except ImageError:
        raise
    except MemoryError as e:
        raise _no_memory(name) from e
    except Exception as e:  # Pillow raises many kinds for bad data: OSError, SyntaxError, ValueError, EOFError...
        raise _corrupt(name) from e


def _check_pixels(size: tuple[int, int], name: str) -> None:
    """Refuse a picture of more than MAX_PIXELS pixels, before anything is decoded."""
    w, h = size
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"image {_shown(name)} is {w}x{h} ({_megapixels(w * h)} megapixels): the most edgeassist reads is"
            f" {_megapixels(MAX_PIXELS)} megapixels; scale it down first"
        )


def _format_of(im: Image.Image) -> str:
    """The accepted format of an opened image: Pillow calls a camera's multi-picture JPEG `MPO`."""
    fmt = im.format or ""
    return "JPEG" if fmt == "MPO" else fmt


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation, 1 to 8 (1 when it is missing or unreadable), as `ImageOps.exif_transpose` reads it."""
    try:
        value = im.getexif().get(0x0112, 1)  # 0x0112: Orientation
    except Exception:  # an unreadable EXIF block leaves the picture as stored, as exif_transpose would
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _sniff(data: bytes) -> str | None:
    """The format `data` starts like, to name it in a message: one of FORMATS, another image format, or None."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "a GIF"
    if head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\0\0\0\0":  # the header's reserved fields are 0
        return "a BMP"
    if head[:4] in (b"II*\0", b"MM\0*"):
        return "a TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "an AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "a HEIC"
    if head[:4] == b"\0\0\1\0" and len(head) >= 6 and head[4:6] != b"\0\0":
        return "an ICO"
    if head[:4] == b"8BPS":
        return "a PSD"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\0\0\0\x0cJXL \r\n\x87\n":
        return "a JPEG XL"
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP file's header claims, or None if the header is not one of the three kinds."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


# -- decoding --------------------------------------------------------------------------------------------


def _fit(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """The largest size of the same shape with at most `max_pixels` pixels, never bigger than `size`."""
    w, h = size
    if w * h <= max_pixels:
        return w, h
    scale = math.sqrt(max_pixels / (w * h))
    nw, nh = max(1, min(w, math.floor(w * scale))), max(1, min(h, math.floor(h * scale)))
    # A very long, thin picture: one side stops at a pixel, so the other gets what is left.
    if nh == 1:
        nw = min(w, max_pixels)
    elif nw == 1:
        nh = min(h, max_pixels)
    while nw * nh > max_pixels:  # float rounding, by a pixel at most
        if nw >= nh:
            nw -= 1
        else:
            nh -= 1
    return nw, nh


def _rgb(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Decode `im`, scale it to `size` (in its stored orientation), turn it as EXIF says, and make it RGB."""
    from PIL import Image, ImageOps

    if im.format in ("JPEG", "MPO") and size != im.size:
        # A JPEG can decode at 1/2, 1/4 or 1/8 of its size for little work; keep twice the target for Lanczos.
        im.draft(None, (size[0] * 2, size[1] * 2))
    image: Image.Image = ImageOps.exif_transpose(im)
    if _orientation(im) in (5, 6, 7, 8):
        size = size[1], size[0]
    alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if image.mode == "I" or image.mode.startswith("I;16"):
        # A 16-bit grey PNG: bring it to 0..255 (a plain convert clips everything over 255 to white).
        top = image.getextrema()[1]
        scale = 255.0 / (255 if image.mode == "I" and isinstance(top, int) and top <= 255 else 65535)
        image = image.convert("F").point(lambda v: v * scale).convert("L")
    image = image.convert("RGBA" if alpha else "RGB")
    if image.size != size:
        # reducing_gap: shrink by whole factors first (Image.reduce, fast), then Lanczos for the rest.
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if alpha:
        background = Image.new("RGBA", image.size, _WHITE)
        image = Image.alpha_composite(background, image).convert("RGB")
    return image


# -- the store -------------------------------------------------------------------------------------------


def _file_sha256(path: Path) -> str | None:
    """The SHA-256 of the regular file at `path` (a link or anything else is not one), or None if there is none."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _write_whole(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all: a private temporary file, synced, then renamed. Raises OSError."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0), FILE_MODE
    )
    try:
        with os.fdopen(fd, "wb") as f:
            if stat.S_IMODE(os.fstat(f.fileno()).st_mode) != FILE_MODE and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), FILE_MODE)  # the umask took away the owner's own bits
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass  # never created past the open, or already renamed
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entry list to disk, so the rename survives a power cut (POSIX; a no-op elsewhere)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the file itself is already on disk
    finally:
        os.close(fd)


# -- messages --------------------------------------------------------------------------------------------


def _shown(name: str) -> str:
    """`name` quoted for a one-line message: control characters (a newline in a file name) become `?`."""
    return "'" + "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in name) + "'"


def _megapixels(pixels: int) -> str:
    """Pixels as megapixels for a message: `40`, `48.2`."""
    mp = pixels / 1e6
    return f"{mp:.0f}" if mp == int(mp) or mp >= 100 else f"{mp:.1f}"


def _reason(e: OSError) -> str:
    """An OSError's reason in a few lowercase words: `permission denied`, `no space left on device`."""
    return (e.strerror or type(e).__name__).lower()


def _folder(name: str) -> ImageError:
    return ImageError(f"cannot read image {_shown(name)}: it is a folder, not a file")


def _too_big(name: str) -> ImageError:
    return ImageError(
        f"image {_shown(name)} is larger than {format_bytes(MAX_FILE_BYTES)}, the most edgeassist reads;"
        " scale it down or save it compressed"
    )


def _no_memory(name: str) -> ImageError:
    return ImageError(f"not enough memory to read image {_shown(name)}: close other programs, or scale it down")


def _corrupt(name: str) -> ImageError:
    return ImageError(f"image {_shown(name)} is corrupt or truncated: save it again, or pick another file")
