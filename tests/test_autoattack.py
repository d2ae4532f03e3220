"""auto_attack: the cascade is the intersection of its attacks, every broken sample has a checked example,
compaction changes nothing, an interrupted evaluation resumes, and bad settings fail before compute."""
import numpy as np
import pytest
import tensorflow as tf

from tfadv import geometry
from tfadv.attacks import APGD, Square
from tfadv.evaluation import auto_attack, compaction, predict_labels
from tfadv.evaluation.autoattack import _resolve_attacks, build_attack
from tfadv.evaluation.state import CascadeState

from autoattack_support import held_out, small_cnn, trained_cnn

EPS = 0.1
SETTINGS = dict(eps=EPS, norm="inf", clip_min=0.0, clip_max=1.0, seed=0)
BUDGET = dict(steps=8, queries=60, n_target_classes=2)
NAMES = ["apgd-ce", "apgd-t", "fab-t", "square"]


@pytest.fixture(scope="module")
def cascade():
    model = trained_cnn()
    x, y = held_out(128)
    result = auto_attack(model, x, y, version="custom", attacks=NAMES, batch_size=64, **SETTINGS, **BUDGET)
    return model, x, y, result


@pytest.mark.slow(seconds=75)
def test_the_cascade_is_the_intersection_of_its_attacks(cascade):
    """Each attack alone, on every clean-correct sample: the cascade's robust set is exactly the samples
    every attack leaves robust (so it is at most each attack's robust accuracy)."""
    model, x, y, result = cascade
    robust = predict_labels(model, x) == y
    for name in NAMES:
        attack = build_attack(name, model, from_logits=False, **SETTINGS, **BUDGET)
        alone = compaction.robust_mask_compacted(model, attack, x, y, batch_size=64)
        assert result.robust_accuracy <= alone.mean()
        robust &= alone
    np.testing.assert_array_equal(result.robust, robust)


def test_every_broken_sample_has_a_checked_example(cascade):
    model, x, y, result = cascade
    pred_clean = predict_labels(model, x)
    assert set(result.broken_by) <= {None, "clean", *NAMES}
    np.testing.assert_array_equal(result.broken_by == "clean", pred_clean != y)
    attacked = np.array([b not in (None, "clean") for b in result.broken_by])
    assert attacked.any()
    size = geometry.norm_of(tf.constant(result.x_adv - x), "inf").numpy()
    assert np.all(predict_labels(model, result.x_adv[attacked]) != y[attacked])
    assert np.all(size[attacked] <= EPS * (1 + 1e-5)) and result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    np.testing.assert_array_equal(result.x_adv[~attacked], x[~attacked])
    assert result.clean_accuracy == pytest.approx(np.mean(pred_clean == y))
    # The summary: robust accuracy after each stage, falling to the result; counts add up.
    after = [row["robust_accuracy"] for row in result.summary]
    assert after == sorted(after, reverse=True) and after[-1] == result.robust_accuracy
    assert [row["attack"] for row in result.summary] == NAMES
    assert sum(row["broken"] for row in result.summary) == attacked.sum()
    assert "robust accuracy" in result.to_markdown()
    low, high = result.interval()
    assert 0.0 <= low < result.robust_accuracy < high <= 1.0
    assert f"(95% interval {low:.1%} to {high:.1%}) on {len(x)} samples" in result.to_markdown()


@pytest.mark.slow
def test_compaction_changes_no_answer(cascade):
    model, x, y, result = cascade
    plain = auto_attack(model, x, y, version="custom", attacks=NAMES, batch_size=64, compact=False,
                        **SETTINGS, **BUDGET)
    np.testing.assert_array_equal(plain.broken_by, result.broken_by)


@pytest.mark.slow(seconds=25)
def test_an_interrupted_evaluation_resumes(tmp_path, monkeypatch):
    model = trained_cnn()
    x, y = held_out(64)
    attacks = lambda: [APGD(model, EPS, "inf", 6, **{k: v for k, v in SETTINGS.items() if k not in ("eps", "norm")}),  # noqa: E731
                       Square(model, EPS, "inf", 40, clip_min=0.0, clip_max=1.0, seed=0)]
    options = dict(version="custom", batch_size=64, **SETTINGS)
    reference = auto_attack(model, x, y, attacks=attacks(), **options)
    state = tmp_path / "state.npz"
    real = compaction.run_compacted

    def crash_on_square(attack, *args, **kwargs):
        if isinstance(attack, Square):
            raise KeyboardInterrupt("interrupted")
        return real(attack, *args, **kwargs)

    monkeypatch.setattr(compaction, "run_compacted", crash_on_square)
    with pytest.raises(KeyboardInterrupt):
        auto_attack(model, x, y, attacks=attacks(), state_path=str(state), **options)
    calls = []

    def count_calls(attack, *args, **kwargs):
        calls.append(type(attack).__name__)
        return real(attack, *args, **kwargs)

    monkeypatch.setattr(compaction, "run_compacted", count_calls)
    resumed = auto_attack(model, x, y, attacks=attacks(), state_path=str(state), **options)
    assert calls == ["Square"]  # APGD's stage was finished and saved before the interruption
    np.testing.assert_array_equal(resumed.broken_by, reference.broken_by)
    np.testing.assert_array_equal(resumed.x_adv, reference.x_adv)
    with pytest.raises(ValueError, match="different evaluation"):
        auto_attack(model, x, y, attacks=attacks(), state_path=str(state), **dict(options, batch_size=32, seed=1))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing field"])
def test_an_unreadable_state_file_is_refused_by_name(tmp_path, damage):
    model = small_cnn(softmax=True)
    x, y = held_out(8)
    path = tmp_path / "state.npz"
    state = CascadeState.open(str(path), {"eps": EPS}, model, x, y, ["apgd-ce"])
    state.start(np.ones(len(x), bool))  # writes the file
    data = path.read_bytes()
    if damage == "truncated":  # what a copy cut short leaves (the state's own writes are atomic)
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a state file" * 8)
    else:
        with np.load(path) as saved:
            np.savez(path, **{k: saved[k] for k in saved.files if k != "done"})
    with pytest.raises(ValueError, match=f"state file {path} cannot be read as an auto_attack state"):
        CascadeState.open(str(path), {"eps": EPS}, model, x, y, ["apgd-ce"])


def test_bad_settings_fail_before_compute():
    model = small_cnn(softmax=True)
    x, y = held_out(8)
    cases = [
        (dict(version="plus"), "version must be"),
        (dict(version="standard", attacks=["square"]), "only read with version='custom'"),
        (dict(version="custom"), "needs attacks"),
        (dict(version="custom", attacks=["pgd"]), "unknown attack 'pgd'"),
        (dict(version="custom", attacks=["square", "square"]), "must be distinct"),
        (dict(version="custom", attacks=[APGD(model, 0.3, clip_min=0.0, clip_max=1.0)]), "has eps = 0.3"),
        (dict(version="custom", attacks=[APGD(small_cnn(), 0.1, clip_min=0.0, clip_max=1.0)]), "different model"),
        (dict(batch_size=0), "batch_size must be"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            auto_attack(model, x, y, **dict(SETTINGS, **kwargs))


@pytest.mark.slow(seconds=40)
def test_the_notes_say_when_a_number_is_not_the_published_protocol(monkeypatch):
    """A named version at another budget, no clip range, and examples an attack called fooling that fail
    the check: each is said in result.warnings (and warned), and the last ones count as robust."""
    model = trained_cnn()
    x, y = held_out(16)
    with pytest.warns(UserWarning) as said:
        cheap = auto_attack(model, x, y, **dict(SETTINGS, version="rand", steps=2))
    assert any("version='rand' with steps=2, queries=5000, n_target_classes=9: not the reference budget "
               "(100, 5000, 9)" in str(w.message) for w in said)
    assert not any("no clip_min/clip_max" in note for note in cheap.warnings)
    open_range = auto_attack(model, x, y, **dict(SETTINGS, clip_min=None, clip_max=None, version="custom",
                                                 attacks=["apgd-ce"], steps=2))
    assert any(note.startswith("no clip_min/clip_max: examples may leave the data's valid range")
               for note in open_range.warnings)
    assert not any("reference budget" in note for note in open_range.warnings)  # custom names its own

    def claims_without_moving(attack, x_part, y_part, ids, **kwargs):
        return np.ones(len(x_part), bool), x_part.copy()

    monkeypatch.setattr(compaction, "run_compacted", claims_without_moving)
    lying = auto_attack(model, x, y, **dict(SETTINGS, version="custom", attacks=["apgd-ce"], steps=2))
    correct = int(np.sum(predict_labels(model, x) == y))
    assert any(note == f"apgd-ce reported {correct} fooled samples whose examples did not pass the check "
               "(misclassified, within eps, inside the range); they count as robust" for note in lying.warnings)
    assert lying.robust_accuracy == lying.clean_accuracy


def test_verbose_shows_each_stage_as_its_samples_finish(capsys):
    model = trained_cnn()
    x, y = held_out(40)
    result = auto_attack(model, x, y, **dict(SETTINGS, version="custom", attacks=["apgd-ce", "square"], steps=2,
                                             queries=5, batch_size=8), verbose=True)
    shown = capsys.readouterr().out
    assert shown.count("robust accuracy:") >= 2  # a bar per stage (Keras' Progbar), its accuracy as it stands
    assert f"square: {result.summary[1]['broken']} broken, robust accuracy {result.robust_accuracy:.2%}" in shown


def test_the_standard_version_is_the_reference_cascade():
    model = small_cnn(softmax=True)
    cascade = _resolve_attacks(
        model, "standard", None, dict(from_logits=False, **SETTINGS, output_index=None),
        dict(steps=100, queries=5000, n_target_classes=9))
    assert [a.name for a in cascade] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    apgd_ce, apgd_t, fab_t, square = cascade
    assert apgd_ce.steps == apgd_t.steps == fab_t.steps == 100 and apgd_ce.loss == "ce" and apgd_t.loss == "dlr"
    assert apgd_t.target_classes == fab_t.target_classes == 9 and apgd_ce.rho == 0.75
    assert square.queries == 5000 and square.p_init == 0.8 and not square.rescale_schedule
    rand = _resolve_attacks(
        model, "rand", None, dict(from_logits=False, **SETTINGS, output_index=None),
        dict(steps=100, queries=5000, n_target_classes=9))
    assert [(a.name, a.eot_iter) for a in rand] == [("apgd-ce", 20), ("apgd-dlr", 20)]


@pytest.mark.slow(seconds=150)
def test_on_the_trained_digits_cnn_apgd_beats_pgd_and_the_cascade_beats_each_attack():
    """The demo model of the reproductions (tfadv.models.digits_cnn, 32 x 32 RGB in [0, 255]) at eps = 0.1 * 255:
    APGD-CE with 99 steps (100 gradient passes) against PGD-100, then the standard cascade on 100 of the
    samples, below both on them. That the cascade is below each of its attacks alone, sample by sample, is
    test_the_cascade_is_the_intersection_of_its_attacks (the same code at a small budget; running all four
    again here at the standard budget took half of this test's two and a half minutes)."""
    from tfadv.attacks import PGD
    from tfadv.datasets.digits import load_digits
    from tfadv.evaluation import robust_mask
    from tfadv.models.digits_cnn import train_digits_cnn

    x_train, y_train, x_test, y_test = load_digits(image_size=32, channels=3, value_range=(0, 255))
    model, _ = train_digits_cnn(x_train, y_train, epochs=10)
    x, y = x_test[:192], y_test[:192]
    settings = dict(clip_min=0.0, clip_max=255.0, seed=0)
    eps = 0.1 * 255
    pgd = robust_mask(model, PGD(model, eps, steps=100, select="first_success", **settings), x, y)
    apgd = robust_mask(model, APGD(model, eps, "inf", 99, **settings), x, y)
    assert apgd.mean() <= pgd.mean() and pgd.mean() > 0.05  # a measurement, not two zeros
    x, y = x[:100], y[:100]
    result = auto_attack(model, x, y, eps=eps, norm="inf", version="standard", batch_size=100, **settings)
    assert [row["attack"] for row in result.summary] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert result.robust_accuracy <= min(apgd[:100].mean(), pgd[:100].mean())
