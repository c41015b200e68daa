"""Images in and out: every mode converted, every bad input named, outputs atomic and safe."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceflex.io.files import InputFiles, OutputError, write_atomic, write_text
from faceflex.io.images import load_image, save_image
from faceflex.io.inputs import InputError, iter_inputs


def write(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


@pytest.fixture
def rgb_image() -> Image.Image:
    y, x = np.mgrid[0:60, 0:80]
    return Image.fromarray(np.stack([x * 3, y * 4, (x + y) * 2], axis=2).astype(np.uint8), "RGB")


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGB", "I", "F"])
def test_modes_become_8bit_rgb(tmp_path, rgb_image, mode):
    ext = "tif" if mode in ("CMYK", "I", "F") else "png"
    path = write(tmp_path / f"x.{ext}", rgb_image.convert(mode))
    loaded = load_image(path)
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (60, 80, 3)
    assert loaded.alpha is None


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # mode I;16
    loaded = load_image(path)
    np.testing.assert_allclose(loaded.rgb[:, :, 0], np.rint(values / 257.0), atol=1)
    assert loaded.rgb[-1, -1, 0] == 255 and loaded.rgb[0, 0, 0] == 0
    assert 100 < loaded.rgb[16, 32, 0] < 156  # mid-grey stays mid-grey


def test_16bit_rgb_png(tmp_path):
    # Pillow cannot write 48-bit PNG; build one with zlib to check that it loads as 8-bit RGB.
    import struct
    import zlib

    height, width = 8, 10
    pixels = np.zeros((height, width, 3), dtype=">u2")
    pixels[..., 0] = 65535
    pixels[..., 2] = 32896
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path = tmp_path / "rgb48.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    loaded = load_image(path)
    assert loaded.rgb.dtype == np.uint8
    np.testing.assert_allclose(loaded.rgb[0, 0], [255, 0, 128], atol=1)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_transparency_composited_on_white_and_alpha_kept(tmp_path, rgb_image, mode):
    rgba = rgb_image.convert("RGBA")
    alpha = np.zeros((60, 80), dtype=np.uint8)
    alpha[:, 40:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    path = write(tmp_path / "t.png", rgba.convert(mode) if mode != "PA" else rgba.convert("RGBA"))
    loaded = load_image(path)
    assert loaded.alpha is not None
    np.testing.assert_array_equal(loaded.rgb[:, :40], 255)  # transparent -> white
    assert loaded.alpha[:, 40:].min() == 255


def test_palette_with_transparency(tmp_path, rgb_image):
    image = rgb_image.convert("P")
    image.info["transparency"] = 0
    path = write(tmp_path / "p.png", image, transparency=0)
    assert load_image(path).alpha is not None


def test_exif_orientation_is_applied(tmp_path, rgb_image):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = write(tmp_path / "o.jpg", rgb_image, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (60, 80)  # width and height swapped
    upright = np.asarray(rgb_image.transpose(Image.Transpose.ROTATE_270))
    assert np.abs(loaded.rgb.astype(int) - upright).mean() < 3


@pytest.mark.parametrize(
    "make, cause",
    [
        (lambda p, img: p.write_bytes(b"this is not an image at all"), "not an image"),
        (lambda p, img: p.write_bytes(b""), "not an image"),
        (lambda p, img: p.write_bytes(_jpeg_bytes(img)[:600]), "truncated"),
        (lambda p, img: p.write_bytes(_corrupt_png(img)), "corrupt"),
    ],
    ids=["text", "empty", "truncated", "corrupt"],
)
def test_bad_files_raise_one_clear_line(tmp_path, rgb_image, make, cause):
    path = tmp_path / "bad.jpg"
    make(path, rgb_image)
    with pytest.raises(InputError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(str(path)) and cause in message and "\n" not in message


def _jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def _corrupt_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 8
    data[start : start + 40] = bytes(40)  # garbage in the compressed stream
    return bytes(data)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, rgb_image):
    path = write(tmp_path / "big.png", rgb_image)
    with pytest.raises(InputError, match="too large"):
        load_image(path, max_pixels=1000)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path)


def test_unreadable_file(tmp_path, rgb_image, monkeypatch):
    path = write(tmp_path / "secret.png", rgb_image)
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads everything: make the open fail as it would for a user
        import faceflex.io.images

        def deny(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(faceflex.io.images.Image, "open", deny)
    with pytest.raises(InputError, match="permission denied"):
        load_image(path)


def test_iter_inputs_files_folders_globs(tmp_path, rgb_image):
    (tmp_path / "sub").mkdir()
    for name in ("b.jpg", "a.PNG", "notes.txt", ".hidden.jpg", "sub/c.webp"):
        (tmp_path / name).write_bytes(b"x")
    names = lambda entries: [e.relative.as_posix() for e in entries]  # noqa: E731
    assert names(iter_inputs([tmp_path])) == ["a.PNG", "b.jpg"]
    assert names(iter_inputs([tmp_path], recursive=True)) == ["a.PNG", "b.jpg", "sub/c.webp"]
    assert names(iter_inputs([str(tmp_path / "*.jpg")])) == ["b.jpg"]
    assert names(iter_inputs([tmp_path / "notes.txt"])) == ["notes.txt"]  # named files are always tried
    assert names(iter_inputs([tmp_path / "b.jpg", tmp_path])) == ["b.jpg", "a.PNG"]  # no duplicates
    errors = [e for e in iter_inputs([tmp_path / "missing.jpg", str(tmp_path / "*.gif")]) if isinstance(e, InputError)]
    assert [e.cause for e in errors] == ["no such file or folder", "no file matches this pattern"]


def test_save_is_atomic_and_keeps_alpha(tmp_path, rgb_image):
    rgb = np.asarray(rgb_image)
    alpha = np.full(rgb.shape[:2], 128, dtype=np.uint8)
    out = save_image(rgb, tmp_path / "deep" / "o.png", alpha=alpha)
    assert Image.open(out).mode == "RGBA"
    assert Image.open(save_image(rgb, tmp_path / "o.jpg", alpha=alpha, jpeg_quality=80)).mode == "RGB"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "o.jpg"]


def test_failed_write_leaves_nothing_behind(tmp_path):
    def explode(handle):
        handle.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "o.png", explode)
    assert list(tmp_path.iterdir()) == []


def test_inputs_are_never_overwritten(tmp_path, rgb_image):
    source = write(tmp_path / "in.png", rgb_image)
    before = source.read_bytes()
    with pytest.raises(OutputError, match="overwrite an input"):
        save_image(np.zeros((4, 4, 3), np.uint8), tmp_path / "in.png", protected=[tmp_path / "." / "in.png"])
    assert source.read_bytes() == before


def test_input_files_know_an_input_by_any_name_and_only_existing_paths(tmp_path, rgb_image):
    source = write(tmp_path / "in.png", rgb_image)
    os.link(source, tmp_path / "hard.png")
    (tmp_path / "soft.png").symlink_to(source)
    write(tmp_path / "other.png", rgb_image)
    inputs = InputFiles([tmp_path / "." / "in.png", tmp_path / "gone.png"])
    assert tmp_path / "hard.png" in inputs and tmp_path / "soft.png" in inputs and source in inputs
    assert tmp_path / "other.png" not in inputs and tmp_path / "gone.png" not in inputs and tmp_path / "new.png" not in inputs
    copy = pickle.loads(pickle.dumps(inputs))  # file identities are read again where it is used
    assert copy.paths == inputs.paths and copy._ids is None and tmp_path / "hard.png" in copy
    with pytest.raises(OutputError, match="overwrite an input"):
        write_text("x", tmp_path / "hard.png", protected=inputs)
