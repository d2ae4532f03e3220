"""tfadv.analysis.batch_size_settings under model.fit: the rate each real update applies, with and without
gradient accumulation (Keras reads a schedule at its micro-batch counter)."""
import keras
import numpy as np
import pytest

from tfadv.analysis.batch_size_settings import TrainingSetting

MICRO_BATCH = 2
MICRO_BATCHES_PER_EPOCH = 10  # 2.5 updates per epoch at k = 4: an update straddles two epochs
EPOCHS = 12


class WeightTrace(keras.callbacks.Callback):
    """The single weight after every micro-batch, with the epoch that micro-batch lies in."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch, self.rows = 0, []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.rows.append((self.epoch, float(self.model.trainable_weights[0].numpy().ravel()[0])))


def applied_rates(setting: TrainingSetting, accumulation: int) -> tuple[list[int], list[float]]:
    """(epoch, rate) of every real update of model.fit, read from the weight's moves.

    The loss is the weight itself (gradient 1 for every sample, so every micro-batch average is 1 too), so
    heavy-ball SGD moves it by v_t = m v_{t-1} - lr_t: lr_t = m v_{t-1} - v_t.
    """
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    batch_size = MICRO_BATCH * accumulation
    updates = MICRO_BATCHES_PER_EPOCH / accumulation
    model.compile(optimizer=setting.optimizer(batch_size, updates, accumulation),
                  loss=lambda y_true, y_pred: keras.ops.mean(y_pred, axis=-1))
    x = np.ones((MICRO_BATCH * MICRO_BATCHES_PER_EPOCH, 1), np.float32)
    trace = WeightTrace()
    model.fit(x, np.zeros_like(x), batch_size=MICRO_BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[trace])
    epochs, weights = zip(*trace.rows)
    moves = np.diff(np.concatenate([[0.0], weights]))
    real = np.arange(len(moves)) % accumulation == accumulation - 1  # the micro-batch that ends an update
    assert np.all(moves[~real] == 0.0), "a micro-batch that only accumulates moved the weight"
    velocities = moves[real]
    rates = setting.momentum * np.concatenate([[0.0], velocities[:-1]]) - velocities
    return list(np.asarray(epochs)[real]), list(rates)


@pytest.mark.parametrize("accumulation", [1, 4])
@pytest.mark.parametrize("setting", [TrainingSetting.benchmark(), TrainingSetting("LR", 0.5),
                                     TrainingSetting("LR/BS", 0.9)], ids=lambda s: s.label)
def test_each_real_update_applies_the_intended_rate(setting, accumulation):
    """The Benchmark halves every 5 epochs (not every 5/k), counting the epoch an update's last micro-batch
    lies in; LR and LR/BS stay at the batch's rate; momentum acts once per update, not per micro-batch."""
    epochs, rates = applied_rates(setting, accumulation)
    assert len(rates) == EPOCHS * MICRO_BATCHES_PER_EPOCH // accumulation
    initial = setting.initial_learning_rate(MICRO_BATCH * accumulation)
    halves = setting.schedule == "Benchmark"
    expected = [initial * 0.5 ** (epoch // 5 if halves else 0) for epoch in epochs]
    np.testing.assert_allclose(rates, expected, rtol=2e-3)


def test_learning_rate_schedule_counts_micro_batches_with_accumulation():
    """Keras evaluates the schedule at its micro-batch counter: micro-batch s of epoch s // 40 at k = 4."""
    schedule = TrainingSetting.benchmark().learning_rate_schedule(512, updates_per_epoch=10, accumulation=4)
    for step, halvings in ((0, 0), (199, 0), (200, 1), (399, 1), (400, 2)):
        assert float(schedule(step)) == pytest.approx(0.01 * 0.5 ** halvings, rel=1e-6)
    with pytest.raises(ValueError, match="accumulation must be a whole number"):
        TrainingSetting("LR").learning_rate_schedule(512, 10, accumulation=0)
