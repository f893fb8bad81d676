"""Reading a user's photo safely: JPEG, PNG (with its alpha), WebP, AVIF or HEIC (heif.py), upright, as 8-bit sRGB.

Pillow sniffs the format from the bytes (not the file name), honours the EXIF orientation a phone writes
instead of turning the pixels, converts CMYK, greyscale and palette images, and refuses a decompression
bomb from the header alone, before any pixel is decoded. A photo's embedded colour profile (an iPhone's
Display P3, a camera's Adobe RGB, a print CMYK) is converted to sRGB, which the video is tagged and shown as.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from a2v_cli.engine import heif
from a2v_cli.errors import InputError
from a2v_cli.files import check_input

# what Pillow reads (MPO: a camera JPEG); HEIC is read by heif.py
FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "AVIF": "AVIF"}
MAX_PIXELS = 100_000_000  # refused from the header above this (a 50-MP phone photo is fine)
MAX_FILE_BYTES = 200 * 1024 * 1024
# A portrait is never a strip: a 190 KB PNG of 1x99000000 took 3.4 GB and ended in a MemoryError (Pillow's resize
# to the working size), 2x60000 took 19 s of face search. Refused from the header, like the pixel cap.
MAX_ASPECT = 8
WORK_SIDE = 4096  # larger photos are decoded at a reduced scale (JPEG: by the decoder itself) to this long side
ALPHA_MIN_SHARE = 0.01  # an alpha channel counts as a matte when at least this share of pixels is transparent


@dataclass(frozen=True)
class Photo:
    rgb: np.ndarray  # (H, W, 3) uint8, upright
    alpha: np.ndarray | None  # (H, W) uint8 when the file carries a real alpha channel
    format: str
    width: int  # of the upright original, before any working downscale
    height: int


def check_photo_file(path: Path) -> None:
    """The photo exists, is a file and is under ``MAX_FILE_BYTES`` (InputError otherwise)."""
    check_input(path, MAX_FILE_BYTES, "the limit", "give the path of a JPEG, PNG or WebP photo",
                "export a smaller JPEG")


def load_photo(path: Path) -> Photo:
    """Decode ``path``; every way it can be unusable is one InputError saying what to do."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    # Pillow's own bomb guard would refuse at open() without saying the size; the same cap is checked
    # below from the header, before any pixel is decoded
    Image.MAX_IMAGE_PIXELS = None
    check_photo_file(path)
    shown: tuple[int, int] | None = None  # a HEIF photo's size as shown, before ffmpeg decoded it to WORK_SIDE
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        with open(path, "rb") as handle:
            head = handle.read(12)
        if heif.is_heif(head):
            found = heif.probe(path)
            shown = (found.width, found.height)
            _check_size(path.name, *shown)  # from the header, before the pixels
            img = heif.decode(path, found, WORK_SIDE)
            if max(shown) <= WORK_SIDE:
                shown = img.size
        else:
            mp4_video = head[4:8] == b"ftyp" and head[8:12] not in (b"M4A ", b"M4B ", b"M4P ")
            if mp4_video or head[:4] == b"\x1aE\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
                raise InputError(f"{path.name} is a video, not a photo",
                                 f"for a clip use --video {path.name}") from None
            raise InputError(f"{path.name} is not an image a2v can read", "use a JPEG, PNG or WebP photo") from None
    except Image.DecompressionBombError:
        raise _too_big(path.name, None) from None
    except OSError as err:
        raise InputError(f"cannot read {path.name}: {err}", "use a JPEG, PNG or WebP photo") from None
    with img:
        fmt = "HEIC" if shown else FORMATS.get(img.format or "")
        if getattr(img, "is_animated", False) and img.format != "MPO":
            raise InputError(f"{path.name} is an animated {img.format or 'image'}",
                             "export one frame as a PNG or JPEG, or use --video for a clip")
        if fmt is None:
            raise InputError(f"{path.name} is a {img.format or 'unknown'} image, which is not supported",
                             "convert it to JPEG, PNG or WebP")
        width, height = shown or img.size
        _check_size(path.name, width, height)
        if img.format in ("JPEG", "MPO") and max(width, height) > WORK_SIDE:
            # the decoder scales by 1/2, 1/4 or 1/8 (fast and small) while both sides stay >= the request
            k = WORK_SIDE / max(width, height)
            img.draft("RGB", (max(1, round(width * k)), max(1, round(height * k))))
        try:
            img.load()
            turned = _turned(img) and not shown  # ffmpeg turned a HEIF already (its own rotation, not EXIF's)
            upright = to_srgb(img if shown else ImageOps.exif_transpose(img))
        except Image.DecompressionBombError:
            raise _too_big(path.name, (width, height)) from None
        except (OSError, SyntaxError, ValueError) as err:
            raise InputError(f"{path.name} is damaged or truncated ({err})",
                             "export or download the photo again") from None
        rgb, alpha = _to_rgb(upright)
    if max(rgb.shape[:2]) > WORK_SIDE:
        rgb, alpha = _shrink(rgb, alpha)
    w0, h0 = (height, width) if turned else (width, height)
    return Photo(rgb, alpha, fmt, w0, h0)


def _check_size(name: str, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise _too_big(name, (width, height))
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InputError(f"{name} is {width}x{height}: one side more than {MAX_ASPECT} times the other",
                         "crop the photo to the person's head and shoulders")


def _turned(img: object) -> bool:
    """Whether the EXIF orientation swaps width and height (5-8: turned by 90 degrees)."""
    try:
        orientation = img.getexif().get(0x0112, 1)  # type: ignore[attr-defined]
    except Exception:
        return False
    return orientation in (5, 6, 7, 8)


def _too_big(name: str, size: tuple[int, int] | None) -> InputError:
    what = f"{size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.0f} megapixels)" if size else "too large"
    return InputError(f"{name} is {what}; the limit is {MAX_PIXELS // 1_000_000} megapixels",
                      "downscale the photo, e.g. to 4000 px on the long side")


def to_srgb(img: Any) -> Any:
    """``img`` converted from its embedded ICC profile to sRGB (LittleCMS, in Pillow's wheels), as RGB or RGBA;
    unchanged where it has no profile, an sRGB one, or one that does not fit its mode or cannot be read.

    Without it a Display P3 photo (every iPhone JPEG) reads as if its numbers were sRGB: skin and clothes come out
    duller than in the photo, and a CMYK one with a print profile comes out in the wrong colours.
    """
    from PIL import ImageCms

    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return img
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if ImageCms.getProfileDescription(source).strip().startswith("sRGB"):
            return img  # sRGB IEC61966-2.1 and the like: already what the video shows
        return ImageCms.profileToProfile(img, source, _srgb(), 0,  # 0: perceptual (an IntEnum since Pillow 10.1)
                                         "RGBA" if img.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img  # a damaged or unusual profile: the numbers as they are, as before


@lru_cache(maxsize=1)
def _srgb() -> Any:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_rgb(img: object) -> tuple[np.ndarray, np.ndarray | None]:
    from PIL import Image

    assert isinstance(img, Image.Image)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit (or float) greyscale: to 8 bits
        grey = np.asarray(img, dtype=np.float64)
        scale = 1 / 257 if img.mode != "F" and grey.max() > 255 else (255.0 if img.mode == "F" else 1.0)
        img = Image.fromarray(np.clip(grey * scale + 0.5, 0, 255).astype(np.uint8))
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"))
        alpha = rgba[..., 3]
        if cuts_out(alpha):
            return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(alpha)
        return np.ascontiguousarray(rgba[..., :3]), None
    return np.asarray(img.convert("RGB")), None


def cuts_out(alpha: np.ndarray) -> bool:
    """Whether an alpha channel is a cut-out (ALPHA_MIN_SHARE of it transparent), not just an opaque one."""
    return bool((alpha < 128).mean() >= ALPHA_MIN_SHARE)


def _shrink(rgb: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = WORK_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS))
    small_alpha = None if alpha is None else np.asarray(Image.fromarray(alpha).resize(size, Image.LANCZOS))
    return small, small_alpha
