"""The statistics behind the prediction checks: PSI on known distributions, image counts from IDX headers,
counting a predictions file, and the settings that choose the thresholds and the rescoring policy."""

import gzip
import math

import numpy as np
import pytest

from assets.prediction_checks import (
    SHARE_FLOOR,
    idx_image_count,
    population_stability_index,
    read_predictions,
)
from orchestration.settings import PredictionCheckSettings, RescoreSettings, Settings, SettingsError
from workload.mnist_idx import IdxFormatError, encode_idx


def test_psi_of_a_distribution_against_itself_is_zero_whatever_the_scale() -> None:
    assert population_stability_index([1, 2, 3], [10, 20, 30]) == pytest.approx(0.0)


def test_psi_on_known_distributions() -> None:
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5)
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert population_stability_index([50, 50], [25, 75]) == pytest.approx(expected)
    assert population_stability_index([50, 50], [25, 75]) == pytest.approx(0.2747, abs=1e-4)
    # PSI is symmetric in its two distributions.
    assert population_stability_index([25, 75], [50, 50]) == pytest.approx(expected)


def test_psi_of_one_digit_against_ten_even_digits_uses_the_floor_for_empty_shares() -> None:
    uniform, only_ones = [100] * 10, [0, 100, 0, 0, 0, 0, 0, 0, 0, 0]
    floor = SHARE_FLOOR
    expected = (1 - 0.1) * math.log(1 / 0.1) + 9 * (floor - 0.1) * math.log(floor / 0.1)
    assert population_stability_index(uniform, only_ones) == pytest.approx(expected)
    assert population_stability_index(uniform, only_ones) > 8


def test_psi_of_a_sample_from_the_distribution_itself_is_about_nine_over_n() -> None:
    """The noise floor the settings' description quotes: PSI ~ chi-square / n, whose mean is (10 - 1) / n."""
    rng = np.random.default_rng(0)
    n = 400
    values = [
        population_stability_index([1] * 10, np.bincount(rng.integers(0, 10, n), minlength=10).tolist())
        for _ in range(300)
    ]
    assert float(np.mean(values)) == pytest.approx(9 / n, rel=0.2)


def test_psi_refuses_mismatched_or_empty_distributions() -> None:
    with pytest.raises(ValueError, match="same categories"):
        population_stability_index([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-empty"):
        population_stability_index([0, 0], [1, 2])


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_the_image_count_is_read_from_the_idx_header(compress: bool) -> None:
    data = encode_idx(np.zeros((37, 28, 28), dtype=np.uint8))
    raw = data if compress else gzip.decompress(data)
    assert idx_image_count(raw, "batch/a.idx3-ubyte") == 37


def test_a_file_that_is_no_image_file_is_named_in_the_error() -> None:
    labels = encode_idx(np.zeros(5, dtype=np.uint8))
    with pytest.raises(
        IdxFormatError, match=r"inference/b1/labels\.idx: expected the IDX image magic number"
    ):
        idx_image_count(labels, "inference/b1/labels.idx")
    with pytest.raises(IdxFormatError, match="at least 8 bytes"):
        idx_image_count(b"\x00\x00", "inference/b1/short.idx")


def test_a_predictions_file_is_counted_by_label_and_confidence() -> None:
    csv = (
        b"source_file,index,predicted_label,probability\n"
        b"a.idx,0,3,0.99000\na.idx,1,3,0.40000\na.idx,2,7,0.51000\n"
    )
    found = read_predictions(csv, cutoff=0.5)
    assert found.rows == 3 and found.low_confidence == 1
    assert found.label_counts == [0, 0, 0, 2, 0, 0, 0, 1, 0, 0]


def test_the_defaults_leave_predictions_and_never_retrain_on_drift() -> None:
    settings = Settings.from_env({})
    assert settings.rescoring.policy == "leave" and settings.rescoring.recent == 0
    assert settings.prediction_checks.drift_retrain_after == 0
    assert settings.prediction_checks.drift_psi_threshold == 0.25


def test_the_rescoring_policy_reads_recent_n() -> None:
    assert RescoreSettings.read({"MNIST_RESCORE_ON_NEW_MODEL": "recent:3"}).recent == 3
    for bad in ("recent", "recent:0", "recent:-1", "all", "recent:two"):
        with pytest.raises(SettingsError, match="MNIST_RESCORE_ON_NEW_MODEL: expected leave or recent:<N>"):
            RescoreSettings.read({"MNIST_RESCORE_ON_NEW_MODEL": bad})


def test_thresholds_out_of_range_are_refused_naming_the_variable() -> None:
    with pytest.raises(
        SettingsError, match="MNIST_LOW_CONFIDENCE_MAX_SHARE: expected a number between 0 and 1"
    ):
        PredictionCheckSettings.read({"MNIST_LOW_CONFIDENCE_MAX_SHARE": "1.5"})
    with pytest.raises(SettingsError, match="MNIST_DRIFT_PSI_THRESHOLD: expected a positive float"):
        PredictionCheckSettings.read({"MNIST_DRIFT_PSI_THRESHOLD": "0"})
