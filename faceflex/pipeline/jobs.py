"""The job the runner calls for each input: a photo (or each sampled frame of a video) through a step, and its files.

Per photo: the step's variants are composed and saved one at a time (``<stem>.<product>.<ext>``,
the input's format and alpha kept where the format allows), the step's extra pictures saved in
the step's ``picture_format``, ``--plot-landmarks`` draws boxes and numbered landmarks (``<stem>.landmarks.png``, the same
picture in every command), and steps that lay their variants out in rows and columns get a
contact sheet (``<stem>.<sheet>.sheet.png``, at most :data:`MAX_SHEET_COLUMNS` columns, so a long
range never draws a giant picture). Per video: per-frame records in ``<stem>.frames.jsonl`` and each
picture product as an MP4 at the source frame rate / ``every``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from PIL import Image

from faceflex.face.detect import DetectSettings
from faceflex.face.tracking import FaceTracker
from faceflex.io.images import DEFAULT_MAX_PIXELS, load_image
from faceflex.io.inputs import InputItem
from faceflex.pipeline.flow import PhotoResult, Step, run_step
from faceflex.pipeline.outputs import Outputs, TextStream
from faceflex.viz import contact_sheet, draw_landmarks, faces_crop

KEEP_FORMATS = ("jpg", "jpeg", "png", "webp", "tif", "tiff")  # variants keep these input formats; others become PNG
MAX_SHEET_COLUMNS = 12
SHEET_CELL_PIXELS = 256


@dataclass(frozen=True)
class PhotoJob:
    """Runs ``step`` on each input for the :class:`~faceflex.pipeline.runner.Runner`."""

    step: Step
    detect: DetectSettings
    faces: str = "all"
    max_pixels: int = DEFAULT_MAX_PIXELS
    plot_landmarks: bool = False
    every: int = 1  # videos: every Nth frame
    sheet: str | None = None  # product name of the contact sheet, when the step's variants form one

    def __call__(self, item: InputItem, outputs: Outputs) -> dict:
        return self.video(item, outputs) if item.is_video else self.image(item, outputs)

    def image(self, item: InputItem, outputs: Outputs) -> dict:
        image = load_image(item.path, self.max_pixels)
        result = run_step(image.rgb, self.step, self.detect, self.faces)
        record = {
            "kind": "image",
            "width": image.size[0],
            "height": image.size[1],
            "face_count": len(result.crops),
            "faces": result.records,
        }
        if image.note:
            record["note"] = image.note
        if self.plot_landmarks:  # also without faces: the picture shows that none was found
            outputs.image("landmarks", draw_landmarks(image.rgb, result.faces), "png")
        ext = item.path.suffix.lower().lstrip(".")
        ext = ext if ext in KEEP_FORMATS else "png"
        for product, picture in result.output.pictures.items():
            outputs.image(product, picture, self.step.picture_format or ext)
        sheet = _Sheet(result) if self.sheet and result.output.sheet_columns else None
        warnings = []
        for variant, rgb in result.images():
            info = {**variant.info, **(variant.measure(rgb) if variant.measure else {})}
            if "warning" in info:
                warnings.append(f"{variant.product}: {info['warning']}")
            outputs.image(variant.product, rgb, ext, alpha=image.alpha, info=info)
            if sheet is not None and variant.row is not None:
                sheet.add(variant.row, variant.column, variant.title, rgb)
        if sheet is not None and sheet.cells:
            picture, note = sheet.render()
            outputs.image(f"{self.sheet}.sheet", picture, "png", info={"note": note} if note else None)
        if warnings:
            record["warnings"] = warnings
        return record

    def video(self, item: InputItem, outputs: Outputs) -> dict:
        from faceflex.io.video import VideoWriter, iter_frames

        frames = outputs.stream("frames", "jsonl", TextStream)
        writers: dict[str, VideoWriter] = {}
        sampled = face_count = 0
        tracker = FaceTracker()
        if hasattr(self.step, "start_video"):  # a step that keeps something per video track
            self.step.start_video()
        for frame in iter_frames(item.path, self.every):
            result = run_step(frame.rgb, self.step, self.detect, self.faces, tracker)
            sampled += 1
            face_count += len(result.crops)
            frames.write(json.dumps({"frame": frame.index, "time": round(frame.time, 3), "faces": result.records}) + "\n")
            pictures = dict(result.output.pictures) if getattr(self.step, "pictures_in_videos", True) else {}
            if self.plot_landmarks:
                pictures["landmarks"] = draw_landmarks(frame.rgb, result.faces)
            pictures.update((variant.product, rgb) for variant, rgb in result.images())
            for product, picture in pictures.items():
                if product not in writers:
                    rate = frame.rate / self.every
                    writers[product] = outputs.stream(
                        product, "mp4", lambda path, r=rate: VideoWriter(path, r), info={"fps": round(float(rate), 3)}
                    )
                writers[product].write(picture)
        return {"kind": "video", "frames_sampled": sampled, "every": self.every, "face_count": face_count}


class _Sheet:
    """Thumbnails of the composed variants (cropped around the faces), laid out as a contact sheet."""

    def __init__(self, result: PhotoResult) -> None:
        self.box = faces_crop(result.photo.shape, result.faces)
        self.columns = result.output.sheet_columns
        # Only the columns shown are kept: a 1,000-strength range keeps 12 thumbnails per row.
        self.shown = sorted(set(np.round(np.linspace(0, self.columns - 1, min(self.columns, MAX_SHEET_COLUMNS))).astype(int).tolist()))
        self.cells: dict[tuple[int, int], tuple[str, np.ndarray]] = {}

    def add(self, row: int, column: int, title: str, rgb: np.ndarray) -> None:
        if column not in self.shown:
            return
        x0, y0, x1, y1 = self.box
        crop = Image.fromarray(rgb[y0:y1, x0:x1])
        scale = SHEET_CELL_PIXELS / max(crop.size)
        if scale < 1:
            crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.Resampling.BOX)
        self.cells[(row, column)] = (title, np.asarray(crop))

    def render(self) -> tuple[np.ndarray, str | None]:
        """The sheet, and a note when columns were left out."""
        rows = sorted({r for r, _ in self.cells})
        grid = [[self.cells[(r, c)] for c in self.shown if (r, c) in self.cells] for r in rows]
        sheet = contact_sheet([[image for _, image in row] for row in grid], [[title for title, _ in row] for row in grid])
        note = f"the sheet shows {len(self.shown)} of {self.columns} columns, evenly spaced" if len(self.shown) < self.columns else None
        return sheet, note
