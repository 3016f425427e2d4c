"""What a user sees of the run worker tag and of the confusion matrix."""

import io

import numpy as np
from dagster._core.storage.tags import TagType, get_tag_type
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageDraw

from assets.pictures import confusion_heatmap
from instance_plugins.run_worker import WORKER_TAG


def test_run_worker_tag_is_hidden_from_users() -> None:
    # The Dagster UI shows a run's tags through GraphQL, which drops every tag of type HIDDEN
    # (dagster_graphql GrapheneRun.resolve_tags); `get_tag_type` is the rule it applies.
    assert get_tag_type(WORKER_TAG) is TagType.HIDDEN, f"{WORKER_TAG!r} would be shown on every run"


def _text(text: str) -> np.ndarray:
    """`text` drawn as the picture draws it (PIL's default font, black on white), cropped to its ink."""
    canvas = Image.new("L", (200, 20), 255)
    ImageDraw.Draw(canvas).text((2, 2), text, fill=0)
    box = Image.eval(canvas, lambda v: 255 - v).getbbox()
    assert box is not None
    return np.asarray(canvas.crop(box))


def _contains(picture: np.ndarray, patch: np.ndarray) -> bool:
    windows = sliding_window_view(picture, patch.shape)
    return bool((windows == patch).all(axis=(2, 3)).any())


def test_confusion_matrix_names_its_axes() -> None:
    matrix = np.diag([50] * 10) + np.eye(10, k=1, dtype=int) * 3
    picture = np.asarray(Image.open(io.BytesIO(confusion_heatmap(matrix))).convert("L"))
    # Black text on white: the title's ink must appear exactly, columns across the top, rows rotated.
    ink = (picture < 128).astype(np.uint8)
    predicted = (_text("predicted digit") < 128).astype(np.uint8)
    true = np.rot90((_text("true digit") < 128).astype(np.uint8))
    assert _contains(ink, predicted), "no 'predicted digit' title over the columns"
    assert _contains(ink, true), "no 'true digit' title beside the rows"
