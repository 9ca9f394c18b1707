import io

import numpy as np
import pytest
from PIL import Image

from mmdemo.inputs import MAX_CAPTION_CHARS, InputError, clean_caption, decode_text, load_image


def _png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("img", [
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)),
    Image.new("RGBA", (40, 30), (255, 0, 0, 0)),  # fully transparent -> white
    Image.new("LA", (40, 30), (80, 255)),
    Image.new("1", (40, 30), 1),
    Image.new("P", (40, 30), 3),
    Image.fromarray(np.linspace(0, 65535, 40 * 30, dtype=np.uint16).reshape(30, 40)),  # 16-bit greyscale
    Image.fromarray(np.random.rand(30, 40).astype(np.float32)),  # 32-bit float
])
def test_odd_modes_become_8bit_rgb(img):
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_transparency_is_composited_on_white():
    out = load_image(Image.new("RGBA", (20, 20), (255, 0, 0, 0)))
    assert out.getpixel((5, 5)) == (255, 255, 255)


def test_16bit_png_file_keeps_its_contrast(tmp_path):
    arr = np.zeros((20, 20), dtype=np.uint16)
    arr[:, 10:] = 60000
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    out = np.asarray(load_image(path))
    assert out[0, 0, 0] == 0 and out[0, 15, 0] == 255


def test_animated_gif_uses_first_frame():
    frames = [Image.new("P", (20, 20), i) for i in (1, 2, 3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    out = load_image(buf.getvalue())
    assert out.mode == "RGB" and out.size == (20, 20)


@pytest.mark.parametrize("bad, match", [
    (b"not an image at all", "could not be read"),
    (_png_bytes(Image.new("RGB", (40, 40)))[:60], "could not be read"),  # truncated file
    (None, "No image"),
    (Image.new("RGB", (4, 4)), "at least"),
])
def test_bad_images_raise_a_clear_input_error(bad, match):
    with pytest.raises(InputError, match=match):
        load_image(bad)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError):
        load_image(tmp_path / "nope.jpg")


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, b"%PDF-1.4 not an image",
                                     _png_bytes(Image.new("RGB", (40, 40)))[:60]])
def test_unreadable_files_say_what_is_wrong_never_where_the_server_keeps_them(tmp_path, content):
    path = tmp_path / "uploads" / "a1b2c3" / "zero.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(InputError) as e:
        load_image(path)
    message = str(e.value)
    assert "could not be read as an image" in message
    assert str(tmp_path) not in message and "zero.jpg" not in message and "a1b2c3" not in message


def test_huge_image_is_refused_before_decoding(monkeypatch):
    import mmdemo.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_PIXELS", 100 * 100)
    with pytest.raises(InputError, match="megapixels|too large"):
        load_image(_png_bytes(Image.new("RGB", (200, 200))))


def test_captions_are_cleaned_and_long_ones_cut():
    assert clean_caption("  hello\x00  world\n")[0] == "hello world"
    text, notes = clean_caption("word " * 2000)
    assert len(text) == MAX_CAPTION_CHARS and notes
    with pytest.raises(InputError, match="empty"):
        clean_caption("   \n\t ")


def test_invalid_utf8_decodes_without_error():
    assert decode_text(b"caf\xe9 ok") == "café ok"  # cp1252
    assert decode_text("中文".encode("gbk")) == "中文"  # the MVSA release's GBK files
    assert clean_caption(b"\xff\xfe\xfa broken")[0]  # never raises
