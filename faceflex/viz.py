"""Pictures for people: photos annotated with face boxes and numbered landmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from faceflex.face.detect import Face

BOX_COLOUR = (255, 64, 32)
POINT_COLOUR = (32, 255, 64)
TEXT_COLOUR = (255, 255, 0)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=max(size, 6))
    except (TypeError, OSError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def draw_landmarks(rgb: np.ndarray, faces: Sequence[Face], numbers: bool = True) -> np.ndarray:
    """A copy of the photo with each face's box, score and 68 landmarks (numbered) drawn on it.

    Sizes follow each face's size, so small and large faces are both legible.
    """
    image = Image.fromarray(np.asarray(rgb, dtype=np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for index, face in enumerate(faces):
        size = max(face.size, 8.0)
        line = max(1, round(size / 80))
        radius = max(1.0, size / 90)
        draw.rectangle([round(v) for v in face.box], outline=BOX_COLOUR, width=line)
        label_font = _font(round(max(10, size / 8)))
        draw.text((face.box[0], face.box[1] - 2), f"#{index} {face.score:.2f}", fill=BOX_COLOUR, font=label_font, anchor="ld")
        number_font = _font(round(size / 28))
        for point_index, (x, y) in enumerate(face.landmarks):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=POINT_COLOUR)
            if numbers and size >= 60:
                draw.text((x + radius, y - radius), str(point_index), fill=TEXT_COLOUR, font=number_font)
    return np.asarray(image)


def classification_lines(record: dict) -> list[str]:
    """Short caption lines for one face's classification record."""
    worn = [name for name, flag in {**record["occlusion"], **record["makeup"]}.items() if flag["value"]]
    return [
        f"#{record['index']} {record['gender']['label']} {record['age']['years']:.0f}y",
        f"{record['expression']['label']}{' smiling' if record['smiling']['value'] else ''}",
        f"{record['pose']['label']} yaw {record['pose']['yaw']:.0f} light {record['illumination']['label']}",
        *([" ".join(worn)] if worn else []),
    ]


def draw_classifications(rgb: np.ndarray, records: Sequence[dict]) -> np.ndarray:
    """A copy of the photo with each face's box and its classification written beside it."""
    image = Image.fromarray(np.asarray(rgb, dtype=np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for record in records:
        left, top, right, bottom = record["box"]
        size = max(8.0, float(np.sqrt(max(right - left, 1) * max(bottom - top, 1))))
        draw.rectangle([round(left), round(top), round(right), round(bottom)], outline=BOX_COLOUR, width=max(1, round(size / 80)))
        font = _font(round(max(10, size / 9)))
        text = "\n".join(classification_lines(record))
        x, y = left, bottom + 2
        bbox = draw.multiline_textbbox((x, y), text, font=font)
        draw.rectangle(bbox, fill=(0, 0, 0))
        draw.multiline_text((x, y), text, fill=TEXT_COLOUR, font=font)
    return np.asarray(image)


def faces_crop(shape: tuple[int, ...], faces: Sequence[Face], margin: float = 0.6) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around all faces, grown by ``margin`` x the largest face size; the whole photo without faces."""
    height, width = shape[:2]
    if not faces:
        return 0, 0, width, height
    boxes = np.array([f.box for f in faces])
    grow = margin * max(f.size for f in faces)
    x0, y0 = np.maximum(boxes[:, :2].min(axis=0) - grow, 0).astype(int)
    x1, y1 = np.minimum(boxes[:, 2:].max(axis=0) + grow, [width, height]).astype(int)
    return int(x0), int(y0), int(max(x1, x0 + 1)), int(max(y1, y0 + 1))


def contact_sheet(cells: Sequence[Sequence[np.ndarray]], titles: Sequence[Sequence[str]], cell_inches: float = 2.2) -> np.ndarray:
    """A matplotlib grid of images (rows x columns) with a title over each; returned as RGB uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, columns = len(cells), max(len(r) for r in cells)
    aspect = cells[0][0].shape[0] / max(cells[0][0].shape[1], 1)  # cells keep their shape: no blank bands
    figure = Figure(figsize=(cell_inches * columns, rows * (cell_inches * aspect + 0.4)), dpi=100)
    FigureCanvasAgg(figure)
    for r, row in enumerate(cells):
        for c, image in enumerate(row):
            axes = figure.add_subplot(rows, columns, r * columns + c + 1)
            axes.imshow(image)
            axes.set_title(titles[r][c], fontsize=9)
            axes.axis("off")
    figure.tight_layout(pad=0.8)
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def mask_panels(aligned: np.ndarray, landmarks: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Side by side: the aligned face with its landmarks, the mask, and the masked face (uint8 RGB)."""
    marked = Image.fromarray(np.asarray(aligned, dtype=np.uint8), "RGB")
    draw = ImageDraw.Draw(marked)
    for x, y in landmarks:
        draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=POINT_COLOUR)
    grey_mask = np.repeat((np.clip(mask, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    masked = (aligned.astype(np.float32) * mask[..., None]).astype(np.uint8)
    gap = np.full((aligned.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([np.asarray(marked), gap, grey_mask, gap, masked], axis=1)
