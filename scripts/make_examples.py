"""Regenerate example_images/ with faceflex itself (public-domain demo photo only).

python scripts/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from faceflex import REGIONS, align_face, demo_image_path, detect_faces, draw_landmarks, load_image, paste_back, region_mask, save_image

OUT = Path(__file__).resolve().parents[1] / "example_images"
HEIGHT = 256


def panel(rgb: np.ndarray, title: str, height: int = HEIGHT) -> Image.Image:
    image = Image.fromarray(rgb).convert("RGB")
    image = image.resize((round(image.width * height / image.height), height), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (image.width, height + 22), "white")
    canvas.paste(image, (0, 22))
    ImageDraw.Draw(canvas).text((4, 4), title, fill="black", font_size=14)
    return canvas


def strip(panels: list[Image.Image]) -> np.ndarray:
    width = sum(p.width for p in panels) + 6 * (len(panels) - 1)
    canvas = Image.new("RGB", (width, panels[0].height), "white")
    x = 0
    for p in panels:
        canvas.paste(p, (x, 0))
        x += p.width + 6
    return np.asarray(canvas)


def main() -> None:
    image = load_image(demo_image_path())
    (face,) = detect_faces(image.rgb)
    aligned = align_face(image.rgb, face.landmarks)
    masks = {region: region_mask(aligned.landmarks, region) for region in REGIONS}
    grey = lambda m: (np.clip(m, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    # Paste back a visibly altered face (colours inverted) to show the mask and the inverse warp.
    pasted = paste_back(image.rgb, 255 - aligned.image, aligned.matrix, masks["face"])
    panels = [panel(draw_landmarks(image.rgb, [face]), "detect + 68 landmarks"), panel(aligned.image, "aligned 128x128")]
    panels += [panel(grey(masks[r]), f"mask: {r}") for r in REGIONS]
    panels.append(panel(pasted, "paste-back (inverted face)"))
    save_image(strip(panels), OUT / "geometry_pipeline.png")
    save_image(draw_landmarks(image.rgb, [face]), OUT / "grace_hopper.landmarks.png")
    print(f"wrote {OUT / 'geometry_pipeline.png'} and {OUT / 'grace_hopper.landmarks.png'}")
    classified_examples()
    edit_examples()
    mask_examples()
    anonymize_examples()


def classified_examples() -> None:
    """`faceflex classify --annotate` on the public-domain photos (the astronaut needs ../shared/data)."""
    from faceflex import ClassifyStep, run_step

    astronaut = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "sk_astronaut.png"
    step = ClassifyStep(device="cpu", annotate=True)
    for path in [demo_image_path(), astronaut]:
        if not Path(path).is_file():
            continue
        target = OUT / f"{Path(path).stem}.classified.jpg"
        save_image(run_step(load_image(path).rgb, step).output.pictures["classified"], target)
        print(f"wrote {target}")


# Showcase rows: attribute, strengths (negative removes it), as `faceflex edit` would run them (mode
# auto). Paint mode (Mustache, Eyeglasses) changes nothing more from 1 on: 0.5 shows a half-blended
# edit. Glasses are taken off a face that wears them (the demo face) and put on one that does not.
# Young (prototype mode) moves less a unit than Male: it is shown younger at 2, 4 and 6.
SHOWCASE = [
    ("Smiling", [0, 1, 2]),
    ("Young", [0, 2, 4, 6]),
    ("Male", [0, 1, 2, 3]),
    ("Mustache", [0, 0.5, 1]),
    ("Eyeglasses", [0, 0.5, 1]),
]
WEARS_GLASSES = {"grace_hopper"}


def edit_examples() -> None:
    """Before/after strips (`faceflex edit`, mode auto, the mean of all vector versions) on the public-domain photos."""
    from faceflex import edit_photo
    from faceflex.steps.edit import strength_name
    from faceflex.viz import contact_sheet, faces_crop

    astronaut = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "sk_astronaut.png"
    for path in [demo_image_path(), astronaut]:
        if not Path(path).is_file():
            continue
        rgb = load_image(path).rgb
        x0, y0, x1, y1 = faces_crop(rgb.shape, detect_faces(rgb), margin=0.3)
        cells, titles = [], []
        for name, strengths in SHOWCASE:
            if name == "Eyeglasses" and Path(path).stem in WEARS_GLASSES:
                strengths = [-a for a in strengths]
            edits = edit_photo(rgb, name, strengths, device="cpu")
            cells.append([e.image[y0:y1, x0:x1] for e in edits])
            titles.append([f"{name}, {strength_name(e.strength)}" for e in edits])
        target = OUT / f"{Path(path).stem}.edits.png"
        save_image(contact_sheet(cells, titles), target)
        print(f"wrote {target}")
    group = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "2008_002079.jpg"
    if group.is_file():  # small faces: a smile's teeth are painted between the parted lips
        rgb = load_image(group).rgb
        edits = edit_photo(rgb, "Smiling", [-2.0, 0.0, 2.0], device="cpu")
        target = OUT / "dinner.smiling.png"
        save_image(strip([panel(e.image, f"Smiling, {strength_name(e.strength)}", rgb.shape[0]) for e in edits]), target)
        print(f"wrote {target}")


MASKS = [("surgical", None, None), ("surgical_blue", None, None), ("KN95", None, None), ("cloth", "navy", None), ("N95", None, None)]


def mask_examples() -> None:
    """`faceflex mask` (several types) and, with shipped unmasking weights, `faceflex unmask` of each
    masked photo, on the public-domain photos: rows original | masked ... (| unmasked ...)."""
    from faceflex import mask_photo, unmask_photo
    from faceflex.shipped import shipped
    from faceflex.viz import contact_sheet, faces_crop

    astronaut = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "sk_astronaut.png"
    can_unmask = shipped("unmask.pt").is_file()
    for path in [demo_image_path(), astronaut]:
        if not Path(path).is_file():
            continue
        rgb = load_image(path).rgb
        x0, y0, x1, y1 = faces_crop(rgb.shape, detect_faces(rgb), margin=0.3)
        masked = [mask_photo(rgb, kind, color=color, texture=texture).image for kind, color, texture in MASKS]
        cells = [[rgb[y0:y1, x0:x1]] + [m[y0:y1, x0:x1] for m in masked]]
        titles = [["original"] + [f"mask --type {k}" + (f" --color {c}" if c else "") for k, c, _ in MASKS]]
        if can_unmask:
            cells.append([rgb[y0:y1, x0:x1]] + [unmask_photo(m, device="cpu").image[y0:y1, x0:x1] for m in masked])
            titles.append(["original"] + ["unmask" for _ in MASKS])
        target = OUT / f"{Path(path).stem}.masks.png"
        save_image(contact_sheet(cells, titles), target)
        print(f"wrote {target}")


def anonymize_examples(weights: str | None = None) -> None:
    """`faceflex anonymize` on the public-domain photos and, with the shared data, a group photo:
    one sheet, a row per photo: original | generate (seeds 0, 1, 2) | blur | pixelate."""
    from faceflex import anonymize_photo
    from faceflex.viz import contact_sheet, faces_crop

    photos = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
    cells, titles = [], []
    for path in [demo_image_path(), photos / "sk_astronaut.png", photos / "2008_001322.jpg"]:
        if not Path(path).is_file():
            continue
        rgb = load_image(path).rgb
        x0, y0, x1, y1 = faces_crop(rgb.shape, detect_faces(rgb), margin=0.3)
        runs = [("generate", seed) for seed in (0, 1, 2)] + [("blur", 0), ("pixelate", 0)]
        results = [anonymize_photo(rgb, method, seed=seed, weights=weights, device="cpu") for method, seed in runs]
        cells.append([rgb[y0:y1, x0:x1]] + [r.image[y0:y1, x0:x1] for r in results])
        row = ["original"]
        for (method, seed), r in zip(runs, results):
            distance = min(f["identity_distance"] for f in r.faces)
            row.append(f"{method}{f' --seed {seed}' if method == 'generate' else ''} (d >= {distance:.2f})")
        titles.append(row)
    target = OUT / "anonymize.png"
    save_image(contact_sheet(cells, titles), target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
