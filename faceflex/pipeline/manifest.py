"""The manifest: one record per input, in one envelope for every command, written as the batch goes.

Envelope (schema 1), the same for ``detect``, ``classify`` and ``edit``::

    {"faceflex": "0.2.0", "schema": 1, "command": "edit", "settings": {...},
     "started": "2026-11-22T04:00:00Z",
     "inputs": [{"file": "a.jpg", "status": "ok", "kind": "image", "width": 1024, "height": 768,
                 "face_count": 1, "faces": [{"index": 0, "box": [...], "score": 1.6, ...}],
                 "outputs": [{"path": "out/a.Smiling.v3.1.0.jpg", "product": "Smiling.v3.1.0", ...}]},
                {"file": "b.jpg", "status": "failed", "error": "truncated image file"}],
     "summary": {"inputs": 2, "succeeded": 1, "failed": 1, "skipped": 0, "faces": 1, "outputs": 6},
     "complete": true, "finished": "2026-11-22T04:00:09Z"}

Formats: ``json`` (that document), ``jsonl`` (the header fields on the first line, one line per
input, then a line with ``summary``/``complete``/``finished``) and ``csv`` (one row per face,
flat ``a.b`` column names; an input without faces or that failed gets one row with its status).

While the batch runs, every finished input is appended to a journal beside the manifest
(``<manifest>.partial``, JSON lines, flushed per input). The manifest itself is written at the end
from the journal (memory stays flat however many inputs), atomically, and the journal removed.
JSON is written ASCII-safe (other characters as ``\\u`` escapes), so a file name that is not valid
UTF-8 never breaks it; CSV carries such names as their original bytes. A run stopped by Ctrl-C or
SIGTERM still writes its manifest, with ``"complete": false``; after kill -9 the journal remains
and describes every input finished so far; ``--skip-existing`` reads it (or the previous
manifest) and skips inputs whose outputs are all there.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from faceflex.io.files import InputFiles, OutputError, describe_os_error, write_atomic

SCHEMA_VERSION = 1
FORMATS = ("json", "jsonl", "csv")
JOURNAL_SUFFIX = ".partial"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def flatten_record(record: dict, prefix: str = "") -> dict:
    """A nested record as flat ``a.b.c`` columns (lists joined by spaces), for CSV."""
    flat: dict = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_record(value, name + "."))
        elif isinstance(value, list):
            flat[name] = " ".join(json.dumps(v) if isinstance(v, (list, dict)) else str(v) for v in value)
        else:
            flat[name] = value
    return flat


def csv_rows(record: dict) -> Iterator[dict]:
    """CSV rows of one input record: one per face, or one for an input without faces."""
    base = {"file": record["file"], "status": record["status"]}
    if record["status"] == "failed":
        yield {**base, "error": record.get("error", "")}
        return
    faces = record.get("faces") or []
    if not faces:
        yield {**base, "face_count": record.get("face_count", 0)}
    for face in faces:
        yield {**base, **flatten_record(face)}


class Manifest:
    """Writes one run's records: a journal as it goes, the manifest in ``fmt`` at the end.

    ``target`` is a file path, or ``"-"`` for standard output (then ``jsonl`` lines are printed
    as each input finishes, and ``json``/``csv`` at the end).
    """

    def __init__(self, target: str, fmt: str, header: dict, protected: InputFiles) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown manifest format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.target, self.fmt, self.protected = target, fmt, protected
        self.header = {"faceflex": header.pop("faceflex"), "schema": SCHEMA_VERSION, **header, "started": utc_now()}
        self.to_stdout = target == "-"
        self.path = None if self.to_stdout else Path(target)
        self.journal_path = None if self.to_stdout else Path(f"{target}{JOURNAL_SUFFIX}")
        self._journal: TextIO | None = None

    # -- before the run -------------------------------------------------------------------
    def open(self) -> None:
        """Start the journal (and check the manifest can be written at all): raises :class:`OutputError`."""
        if self.path is not None:
            if self.path in self.protected:
                raise OutputError(f"{self.path}: the manifest would overwrite an input file")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._journal = open(self.journal_path, "w", encoding="utf-8")
            except OSError as error:
                raise OutputError(f"{self.path}: cannot write the manifest here ({describe_os_error(error)})") from None
        else:
            self._journal = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._write_line(self.header)
        if self.to_stdout and self.fmt == "jsonl":
            self._echo(json.dumps(self.header) + "\n")

    def previous_records(self) -> dict[str, dict]:
        """Records of inputs finished by an earlier run into the same manifest (final or journal), by file."""
        records: dict[str, dict] = {}
        for source in (self.path, self.journal_path):
            if source is None or not source.is_file():
                continue
            try:
                text = source.read_text(encoding="utf-8")
                if source == self.path and self.fmt == "json":
                    lines = [json.dumps(r) for r in json.loads(text).get("inputs", [])]
                elif source == self.path and self.fmt == "csv":
                    continue  # a CSV has no outputs list: only the journal can say what is done
                else:
                    lines = text.splitlines()
                for line in lines:
                    record = json.loads(line) if line.strip() else {}
                    if "file" in record and "status" in record:
                        records[record["file"]] = record
            except (OSError, ValueError, AttributeError):
                continue  # an unreadable or cut-off previous manifest: nothing to carry over
        return records

    # -- during the run -------------------------------------------------------------------
    def add(self, record: dict) -> None:
        """Append one input's record to the journal (and print it, for ``jsonl`` on stdout)."""
        self._write_line(record)
        if self.to_stdout and self.fmt == "jsonl":
            self._echo(json.dumps(record) + "\n")

    def _write_line(self, record: dict) -> None:
        assert self._journal is not None
        try:
            self._journal.write(json.dumps(record) + "\n")
            self._journal.flush()
        except OSError as error:
            raise OutputError(f"{self.journal_path or 'manifest'}: cannot write the manifest ({describe_os_error(error)})") from None

    @staticmethod
    def _echo(text: str) -> None:
        """Print to stdout; file names that are not valid UTF-8 come out as their original bytes."""
        data = text.encode("utf-8", "surrogateescape")
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is not None:
            sys.stdout.flush()
            buffer.write(data)
            buffer.flush()
        else:
            sys.stdout.write(data.decode("utf-8", "replace"))
            sys.stdout.flush()

    # -- after the run --------------------------------------------------------------------
    def finish(self, summary: dict, complete: bool, interrupted: str | None = None) -> Path | None:
        """Write the manifest from the journal and remove the journal; returns the path (None for stdout).

        Raises :class:`OutputError` when the manifest cannot be written; the journal is then kept.
        """
        closing = {"summary": summary, "complete": complete, **({"interrupted": interrupted} if interrupted else {}), "finished": utc_now()}
        assert self._journal is not None
        if self.to_stdout:
            if self.fmt == "jsonl":
                self._echo(json.dumps(closing) + "\n")
            else:
                buffer = io.StringIO()
                self._render(buffer, closing)
                self._echo(buffer.getvalue())
            self._journal.close()
            return None
        self._journal.close()
        try:
            with open(self.journal_path, encoding="utf-8") as journal:
                self._journal = journal
                write_atomic(self.path, lambda handle: self._render(_TextSink(handle), closing), self.protected)
        except OSError as error:
            raise OutputError(
                f"{self.path}: cannot write the manifest ({describe_os_error(error)}); the records are in {self.journal_path}"
            ) from None
        os.unlink(self.journal_path)
        return self.path

    def _records(self) -> Iterator[dict]:
        """The journal's input records, read back line by line."""
        assert self._journal is not None
        self._journal.seek(0)
        lines = iter(self._journal)
        next(lines, None)  # the header
        for line in lines:
            if line.strip():
                yield json.loads(line)

    def _render(self, out, closing: dict) -> None:
        if self.fmt == "jsonl":
            out.write(json.dumps(self.header) + "\n")
            for record in self._records():
                out.write(json.dumps(record) + "\n")
            out.write(json.dumps(closing) + "\n")
        elif self.fmt == "json":
            out.write(json.dumps(self.header, indent=1)[:-2] + ',\n "inputs": [')
            for i, record in enumerate(self._records()):
                out.write(("," if i else "") + "\n  " + json.dumps(record))
            tail = json.dumps(closing, indent=1)[2:]  # without "{\n"
            out.write("\n ],\n" + tail + "\n")
        else:
            self._render_csv(out)

    def _render_csv(self, out) -> None:
        columns: dict[str, None] = {"file": None, "status": None}
        for record in self._records():  # first pass: the union of the columns, in first-seen order
            for row in csv_rows(record):
                columns.update(dict.fromkeys(row))
        writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for record in self._records():
            writer.writerows(csv_rows(record))


class _TextSink:
    """A text ``write`` over a binary handle (UTF-8), for rendering straight into an atomic file."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def write(self, text: str) -> None:
        self.handle.write(text.encode("utf-8", "surrogateescape"))
