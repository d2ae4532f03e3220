"""AWGN and the CIFAR-10-C loader (tfadv.analysis.corruptions)."""
import numpy as np
import pytest

from tfadv.analysis import corruptions as noise


def test_awgn_stays_in_the_input_range_and_is_seeded():
    x = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 1)).astype(np.float32)
    noisy = noise.awgn(x, 1.0, clip_min=0.0, clip_max=1.0, seed=3)
    assert noisy.dtype == np.float32 and noisy.shape == x.shape
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert (noisy == 0.0).any() and (noisy == 1.0).any()  # the clip is active at sigma = 1
    np.testing.assert_array_equal(noisy, noise.awgn(x, 1.0, seed=3))
    assert not np.array_equal(noisy, noise.awgn(x, 1.0, seed=4))


def test_awgn_unclipped_has_the_requested_moments():
    x = np.zeros((200, 32, 32), np.float32)
    noisy = noise.awgn(x, 0.5, clip_min=None, clip_max=None, seed=0)
    assert noisy.mean() == pytest.approx(0.0, abs=5e-3)
    assert noisy.std() == pytest.approx(0.5, rel=5e-3)


def test_awgn_rejects_bad_arguments():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="stddev"):
        noise.awgn(x, -1.0)
    with pytest.raises(TypeError, match="floating"):
        noise.awgn(np.zeros((2, 3), np.uint8), 1.0)
    with pytest.raises(ValueError, match="both"):
        noise.awgn(x, 1.0, clip_min=0.0, clip_max=None)
    with pytest.raises(ValueError, match="clip_min must be < clip_max"):
        noise.awgn(x, 1.0, clip_min=1.0, clip_max=0.0)


@pytest.mark.parametrize("low, high", [(0.0, 255.0), (-1.0, 1.0)])
def test_awgn_refuses_data_outside_the_clip_range(low, high):
    """Data in [0, 255] or [-1, 1] with the default [0, 1] clip would be moved into [0, 1], not noised: the
    error names both ranges; given the data's range, the noise is added and clipped to it."""
    x = np.random.default_rng(0).uniform(low, high, (16, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"outside \[clip_min, clip_max\] = \[0, 1\].*pass your data's range"):
        noise.awgn(x, 0.1)
    noisy = noise.awgn(x, 0.1 * (high - low), clip_min=low, clip_max=high, seed=1)
    assert low <= noisy.min() and noisy.max() <= high
    assert np.abs(noisy - x).mean() > 0.01 * (high - low)  # noise was added, the data kept its range


def test_cifar10c_config_names_and_validation():
    assert noise.cifar10c_config("shot_noise", 3) == "cifar10_corrupted/shot_noise_3"
    with pytest.raises(ValueError, match="noise corruptions"):
        noise.cifar10c_config("fog", 1)
    with pytest.raises(ValueError, match="severity"):
        noise.cifar10c_config("gaussian_noise", 6)


def test_cifar10c_loader_averages_over_severities_on_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    seen = []

    def accuracy(x, y):
        seen.append((x.shape, float(x.min()), float(x.max()), y.dtype))
        return float(len(seen))

    with tfds.testing.mock_data(num_examples=6):
        result = noise.accuracy_over_severities(accuracy, "gaussian_noise", data_dir=tmp_path)
    assert list(result) == [1, 2, 3, 4, 5] and list(result.values()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    for shape, low, high, dtype in seen:
        assert shape == (6, 32, 32, 3) and 0.0 <= low and high <= 1.0 and dtype == np.int64
