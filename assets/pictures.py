"""Small PNG pictures for asset metadata, embedded as markdown so the Dagster UI shows them inline."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np

if TYPE_CHECKING:
    from PIL import Image


def _png(image: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)  # type: ignore[attr-defined]
    return buf.getvalue()


def markdown_image(png: bytes, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def digit_grid(
    images: np.ndarray, labels: Sequence[int] | None = None, per_row: int = 10, scale: int = 2
) -> bytes:
    """A grid of digits (white on black), each with its label underneath when given."""
    from PIL import Image, ImageDraw

    n = len(images)
    rows = (n + per_row - 1) // per_row
    cell_w, cell_h = 28 * scale + 4, 28 * scale + (14 if labels is not None else 4)
    sheet = Image.new("L", (per_row * cell_w, rows * cell_h), color=24)
    draw = ImageDraw.Draw(sheet)
    for i, img in enumerate(images):
        x, y = (i % per_row) * cell_w + 2, (i // per_row) * cell_h + 2
        tile = Image.fromarray(np.asarray(img, dtype=np.uint8)).resize(
            (28 * scale, 28 * scale), Image.Resampling.NEAREST
        )
        sheet.paste(tile, (x, y))
        if labels is not None:
            draw.text((x + 28 * scale // 2 - 3, y + 28 * scale), str(labels[i]), fill=220)
    return _png(sheet)


# Axis titles of the confusion matrix: what its rows and its columns count.
ROWS_TITLE = "true digit"
COLUMNS_TITLE = "predicted digit"


def _title(text: str) -> Image.Image:
    """`text` in black on white, cropped to a 2-pixel border around its ink."""
    from PIL import Image, ImageDraw

    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text)
    label = Image.new("L", (int(right - left) + 4, int(bottom - top) + 4), 255)
    ImageDraw.Draw(label).text((2 - left, 2 - top), text, fill=0)
    return label


def confusion_heatmap(matrix: np.ndarray, cell: int = 26) -> bytes:
    """Confusion matrix as a heatmap: rows are true digits, columns predicted; counts in each cell.

    The axes are titled (`ROWS_TITLE` beside the rows, reading upwards; `COLUMNS_TITLE` above the columns).
    """
    from PIL import Image, ImageDraw

    m = np.asarray(matrix, dtype=float)
    n = m.shape[0]
    columns_title = _title(COLUMNS_TITLE)
    rows_title = _title(ROWS_TITLE).rotate(90, expand=True)
    top, left = columns_title.height, rows_title.width  # bands for the titles
    margin = 18  # the digits 0-9 along each axis
    x0, y0 = left + margin, top + margin  # where the grid starts
    img = Image.new("RGB", (x0 + n * cell, y0 + n * cell), "white")
    img.paste(columns_title.convert("RGB"), (x0 + max(0, (n * cell - columns_title.width) // 2), 0))
    img.paste(rows_title.convert("RGB"), (0, y0 + max(0, (n * cell - rows_title.height) // 2)))
    draw = ImageDraw.Draw(img)
    row_totals = m.sum(1, keepdims=True)
    share = np.divide(m, row_totals, out=np.zeros_like(m), where=row_totals > 0)
    for i in range(n):
        draw.text((left + 4, y0 + i * cell + cell // 3), str(i), fill="black")
        draw.text((x0 + i * cell + cell // 3, top + 4), str(i), fill="black")
        for j in range(n):
            x, y = x0 + j * cell, y0 + i * cell
            if i == j:
                shade = int(255 - 155 * share[i, j])
                color = (shade, 255, shade)  # diagonal in green: correct
            else:
                shade = int(255 - min(1.0, share[i, j] * 8) * 200)
                color = (255, shade, shade)  # off-diagonal in red: mistakes, amplified
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=color, outline=(230, 230, 230))
            if m[i, j]:
                draw.text((x + 2, y + cell // 3), str(int(m[i, j])), fill="black")
    return _png(img)


def bar_chart(counts: Sequence[int], labels: Sequence[str], height: int = 80, bar: int = 22) -> bytes:
    """A small vertical bar chart (e.g. predicted-label distribution)."""
    from PIL import Image, ImageDraw

    top = max(max(counts), 1)
    img = Image.new("RGB", (len(counts) * bar + 4, height + 28), "white")
    draw = ImageDraw.Draw(img)
    for i, (count, label) in enumerate(zip(counts, labels, strict=True)):
        h = int(height * count / top)
        x = 2 + i * bar
        draw.rectangle([x + 2, 2 + height - h, x + bar - 3, 2 + height], fill=(70, 110, 200))
        draw.text((x + bar // 2 - 3, height + 5), label, fill="black")
        draw.text((x + 1, height + 16), str(count) if count < 10000 else f"{count // 1000}k", fill="gray")
    return _png(img)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def share_comparison(
    expected: Sequence[float],
    actual: Sequence[float],
    labels: Sequence[str],
    expected_name: str = "training",
    actual_name: str = "this batch",
    height: int = 80,
    bar: int = 26,
) -> bytes:
    """Two shares per label side by side: `expected` in grey (e.g. the training labels), `actual` in blue
    (e.g. a batch's predicted digits), each with its percentage underneath; the names form the legend."""
    from PIL import Image, ImageDraw

    top = max(max(expected), max(actual), 1e-9)
    legend = 14
    img = Image.new("RGB", (max(len(labels) * bar + 4, 150), legend + height + 40), "white")
    draw = ImageDraw.Draw(img)
    grey, blue = (170, 170, 170), (70, 110, 200)
    draw.text((2, 1), f"{expected_name}", fill=grey)
    draw.text((8 + 6 * len(expected_name), 1), f"{actual_name}", fill=blue)
    half = (bar - 4) // 2
    base = legend + height
    for i, (e, a, label) in enumerate(zip(expected, actual, labels, strict=True)):
        x = 2 + i * bar
        for offset, share, color in ((1, e, grey), (1 + half, a, blue)):
            h = int(height * share / top)
            draw.rectangle([x + offset, 2 + base - h, x + offset + half - 1, 2 + base], fill=color)
        draw.text((x + bar // 2 - 3, base + 5), label, fill="black")
        draw.text((x + 1, base + 16), f"{100 * a:.0f}%", fill=blue)
        draw.text((x + 1, base + 27), f"{100 * e:.0f}%", fill="gray")
    return _png(img)
