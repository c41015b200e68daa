"""Pack MaskTheFace's mask templates and textures (MIT) into ``data/mask_templates.npz``.

    python scripts/make_mask_templates.py [--source ../shared/data/masks] [--out data/mask_templates.npz]

Reads the two zips in place. Each RGBA template is scaled so that its longer side is at most 384 px
(its six anchors scaled with it); each texture to at most 160 px. Written per template: ``<name>``
(h, w, 4) uint8 RGBA and ``<name>.anchors`` (6, 2) float32, the anchors a-f in pixel-centre
coordinates (x right, y down); per texture: ``texture:<group>/<name>`` (h, w, 3) uint8. The
licence text goes to ``data/MASK_TEMPLATES_LICENSE.txt``.
"""

from __future__ import annotations

import argparse
import configparser
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

TEMPLATE_SIDE = 384
TEXTURE_SIDE = 160


def _scaled(image: Image.Image, side: int) -> tuple[Image.Image, float]:
    factor = min(1.0, side / max(image.size))
    if factor < 1.0:
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)
    return image, factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="../shared/data/masks")
    parser.add_argument("--out", default="data/mask_templates.npz")
    args = parser.parse_args()
    source, arrays = Path(args.source), {}
    with zipfile.ZipFile(source / "maskthe_face_templates.zip") as pack:
        config = configparser.ConfigParser(inline_comment_prefixes=(";",))
        config.read_string(pack.read("masks/masks.cfg").decode())
        for name in config.sections():
            section = config[name]
            if "template" not in section:  # MaskTheFace's "empty" and "inpaint" entries draw nothing
                continue
            rgba = Image.open(io.BytesIO(pack.read(section["template"].strip()))).convert("RGBa")  # premultiplied for resampling
            rgba, factor = _scaled(rgba, TEMPLATE_SIDE)
            anchors = [[float(v) for v in section[f"mask_{k}"].split(",")] for k in "abcdef"]
            arrays[name] = np.asarray(rgba.convert("RGBA"))
            arrays[f"{name}.anchors"] = (np.asarray(anchors, np.float32) + 0.5) * factor - 0.5
        licence = pack.read("LICENSE")
    with zipfile.ZipFile(source / "maskthe_face_textures.zip") as pack:
        for member in sorted(n for n in pack.namelist() if n.endswith(".jpg")):
            texture, _ = _scaled(Image.open(io.BytesIO(pack.read(member))).convert("RGB"), TEXTURE_SIDE)
            arrays["texture:" + "/".join(Path(member).with_suffix("").parts[-2:])] = np.asarray(texture)
    out = Path(args.out)
    np.savez_compressed(out, **arrays)
    (out.parent / "MASK_TEMPLATES_LICENSE.txt").write_bytes(
        b"The face-mask templates and textures in mask_templates.npz are resized copies of MaskTheFace's\n"
        b"(https://github.com/aqeelanwar/MaskTheFace), made by scripts/make_mask_templates.py. Their licence:\n\n" + licence
    )
    print(
        f"{out}: {sum(1 for k in arrays if '.' not in k and ':' not in k)} templates, "
        f"{sum(1 for k in arrays if k.startswith('texture:'))} textures, {out.stat().st_size / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
