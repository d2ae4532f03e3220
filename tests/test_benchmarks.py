"""`make bench`'s evaluation cases run end to end on a small model, one round each: a case broken by a change
to an attack fails here, in seconds, not at the end of an hour-long bench."""
import math

from tfadv.benchmarks import evaluation

from autoattack_support import held_out, small_cnn


def test_evaluation_cases_give_ratios_to_their_floors():
    model = small_cnn(softmax=True)
    x, y = held_out(16)
    x = x * evaluation.CLIP[1]  # the bench's digits are in [0, 255]
    rows = [
        evaluation.robust_accuracy_case("PGD", model, x, y, eps=evaluation.EPS["robust"], steps=2, restarts=2,
                                        target=1.05, rounds=1),
        evaluation.apgd_case(model, x, y, steps=3, rounds=1),
        evaluation.square_case(model, x, y, queries=3, rounds=1),
        evaluation.fab_case(model, x, y, steps=2, targets=2, rounds=1),
    ]
    assert [row["floor_passes"] for row in rows] == [4, 4, 4, 4]
    for row in rows:
        assert 0.0 <= row["robust_accuracy"] <= 1.0, row
        for clock in ("wall", "cpu"):
            ratio = row[f"tfadv/floor ({clock})"]
            assert math.isfinite(ratio) and ratio > 0, row
