import time

import numpy as np
import pytest

from vision.drift import DriftReport, compare, compare_values, image_stats, ks_2samp, psi
from vision.synth import Lighting, synth_phone


def test_image_stats_of_known_images():
    grey = np.full((40, 60, 3), 100, np.uint8)
    stats = image_stats(grey)
    assert stats["brightness"] == pytest.approx(100, abs=0.1)
    assert stats["contrast"] == pytest.approx(0, abs=1e-3)
    assert stats["sharpness"] == pytest.approx(0, abs=1e-3)
    assert stats["r_g"] == pytest.approx(1) and stats["b_g"] == pytest.approx(1)
    assert stats["saturation"] == pytest.approx(0)
    reddish = grey.copy()
    reddish[..., 0] = 150
    assert image_stats(reddish)["r_g"] == pytest.approx(1.5)
    assert image_stats(reddish)["saturation"] > 0.3


def test_image_stats_sharpness_drops_with_blur():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    blurred = np.repeat(np.repeat(sharp[::4, ::4], 4, 0), 4, 1)
    assert image_stats(blurred)["sharpness"] < image_stats(sharp)["sharpness"] / 2


def test_image_stats_is_fast_on_a_full_photo():
    image = synth_phone(seed=0).image
    image_stats(image)
    started = time.perf_counter()
    for _ in range(5):
        image_stats(image)
    assert (time.perf_counter() - started) / 5 < 0.05  # about 4 ms


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, 2000)
    assert psi(reference, rng.normal(0, 1, 2000)) < 0.05
    assert psi(reference, rng.normal(1, 1, 2000)) > 0.5


def test_psi_survives_empty_bins_and_constant_reference():
    assert np.isfinite(psi(np.arange(100.0), np.full(50, 1000.0)))
    assert psi(np.zeros(20), np.zeros(20)) == pytest.approx(0)


def test_ks_2samp():
    rng = np.random.default_rng(2)
    a = rng.normal(0, 1, 500)
    statistic, pvalue = ks_2samp(a, rng.normal(0, 1, 500))
    assert statistic < 0.1 and pvalue > 0.05
    statistic, pvalue = ks_2samp(a, rng.normal(0.5, 1, 500))
    assert statistic > 0.15 and pvalue < 1e-6
    # Disjoint samples: the CDFs are a whole step apart.
    statistic, pvalue = ks_2samp(np.arange(10.0), np.arange(10.0) + 100)
    assert statistic == 1.0
    assert pvalue < 1e-3


def test_ks_pvalue_matches_the_kolmogorov_table():
    # n = m = 2000, so the effective size is sqrt(1000); D = 1.36 / sqrt(1000) gives p ~ 0.05.
    a = np.linspace(0, 1, 2000)
    shift = 1.36 / np.sqrt(1000)
    _, pvalue = ks_2samp(a, a + shift)
    assert pvalue == pytest.approx(0.05, abs=0.01)


def test_too_small_samples_are_refused():
    with pytest.raises(ValueError, match="at least 10"):
        psi([1.0, 2.0], list(range(20)))
    with pytest.raises(ValueError, match="at least 10"):
        compare([{"brightness": 1.0}] * 3, [{"brightness": 1.0}] * 30)
    with pytest.raises(ValueError, match="NaN"):
        compare_values([float("nan")] * 12, [1.0] * 12)


def test_compare_values_on_model_scores():
    rng = np.random.default_rng(3)
    steady = compare_values(rng.beta(2, 8, 300), rng.beta(2, 8, 300))
    assert not steady.drifted
    shifted = compare_values(rng.beta(2, 8, 300), rng.beta(5, 5, 300))
    assert shifted.drifted
    assert shifted.recent_mean > shifted.reference_mean
    assert set(shifted.to_dict()) == {
        "psi",
        "ks_statistic",
        "ks_pvalue",
        "reference_mean",
        "recent_mean",
        "drifted",
    }


def _stats(seeds: range, lighting: Lighting | None = None) -> list[dict[str, float]]:
    return [
        image_stats(synth_phone(seed=s, size=(128, 72), defect_rate=0.3, lighting=lighting).image)
        for s in seeds
    ]


def test_same_line_does_not_drift_but_brighter_light_does():
    reference = _stats(range(0, 40))
    report = compare(reference, _stats(range(100, 140)))
    assert isinstance(report, DriftReport)
    assert not report.drifted, report.to_dict()
    brighter = compare(reference, _stats(range(100, 140), Lighting(brightness=1.4)))
    assert brighter.drifted
    assert brighter.features["brightness"].drifted
    assert (
        brighter.features["brightness"].recent_mean > brighter.features["brightness"].reference_mean
    )
    data = brighter.to_dict()
    assert data["drifted"] is True and data["recent_count"] == 40
    assert data["features"]["brightness"]["drifted"] is True


def test_compare_names_a_missing_feature():
    reference = [{"brightness": float(i)} for i in range(12)]
    with pytest.raises(ValueError, match="brightness"):
        compare(reference, [{"contrast": 1.0}] * 12)
