"""The grid of the four experiments (and the checks beyond the paper) and what one cell computes.

strength (kappa, seed, steps): one PGD-kappa model, its logged attacker panel, final test accuracies and the
adversarial test images of each panel attack (kept for Table 1 and the checks beyond the paper);
transfer (seed, steps): Table 1 over the strength models of that seed (it waits for them);
staleness (s, seed): one model trained through a queue of s batches;
async (workers) and baseline: tfadv.training.asynchronous on every device of the machine (whole_machine);
autoattack and masking (kappa, seed, steps): beyond the paper, on a strength model (reproduce.efficient.beyond).
"""
from __future__ import annotations

import time

from reproduce.efficient import training
from reproduce.efficient.profiles import Profile
from tfadv.experiments import Run

STRENGTH, TRANSFER, STALENESS, ASYNC, BASELINE = "strength", "transfer", "staleness", "async", "baseline"
AUTOATTACK, MASKING = "autoattack", "masking"
#: Offset of the final evaluation's attack seed: the same for a net's own final numbers and for Table 1, so
#: Table 1's diagonal is exactly the white-box accuracy of the strength cell.
EVAL_SEED = 2


def seed_of(run: Run, replicate: int) -> int:
    """The training seed of replicate r under the run's base seed."""
    return 1000 * run.seed + replicate


def grid(run: Run) -> list[dict]:
    p: Profile = run.profile
    seeds = range(run.options["seeds"])
    cells = [{"experiment": STRENGTH, "kappa": k, "seed": r, "steps": p.train_steps} for r in seeds for k in p.kappas]
    cells += [{"experiment": STRENGTH, "kappa": k, "seed": r, "steps": n} for n in p.search_steps
              for r in range(p.search_seeds) for k in p.search_kappas]
    cells += [{"experiment": STALENESS, "staleness": s, "kappa": p.staleness_kappa, "seed": r}
              for r in seeds for s in p.staleness_values]
    cells += [{"experiment": ASYNC, "workers": w, "kappa": p.async_kappa} for w in p.async_workers]
    cells += [{"experiment": BASELINE, "kappa": p.baseline_kappa}]
    cells += [{"experiment": TRANSFER, "seed": r, "steps": p.train_steps} for r in seeds]
    cells += [{"experiment": TRANSFER, "seed": r, "steps": n} for n in p.search_steps for r in range(p.search_seeds)]
    cells += [{"experiment": AUTOATTACK, "kappa": k, "seed": 0, "steps": p.train_steps} for k in p.aa_kappas]
    cells += [{"experiment": MASKING, "kappa": k, "seed": 0, "steps": p.train_steps} for k in p.masking_kappas]
    return cells


def transfer_nets(p: Profile, steps: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(targets, sources) of a transfer cell, each a list of (kappa, train steps). Table 1: every transfer kappa
    at the main length. The search: its longer-trained weak nets, each attacked white-box and from the main
    run's nets of the same seed (any other net is a valid source of a transferred attack)."""
    main = [(k, p.train_steps) for k in p.transfer_kappas]
    if steps == p.train_steps:
        return main, main
    return [(k, steps) for k in p.search_kappas], main


def transfer_kappas(p: Profile, steps: int) -> tuple[int, ...]:
    """The target kappas of a transfer cell."""
    return tuple(k for k, _ in transfer_nets(p, steps)[0])


def strength_cell(kappa: int, seed: int, steps: int) -> dict:
    return {"experiment": STRENGTH, "kappa": kappa, "seed": seed, "steps": steps}


def needs(cell: dict, run: Run) -> list[dict]:
    """A transfer cell reads the examples and weights of its seed's strength models; the checks beyond the
    paper read their strength model's."""
    if cell["experiment"] in (AUTOATTACK, MASKING):
        return [strength_cell(cell["kappa"], cell["seed"], cell["steps"])]
    if cell["experiment"] != TRANSFER:
        return []
    targets, sources = transfer_nets(run.profile, cell["steps"])
    return [strength_cell(k, cell["seed"], n) for k, n in dict.fromkeys(targets + sources)]


def whole_machine(cell: dict, run: Run) -> bool:
    """The asynchronous runs use every device, and their speed is what they measure."""
    return cell["experiment"] in (ASYNC, BASELINE)


def prepare(run: Run) -> None:
    """Without GPUs, split the CPU into logical devices for the trainer and the attack workers."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return
    count = max(run.profile.async_workers) + 1
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        if len(tf.config.get_logical_device_configuration(cpu) or []) < count:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:  # TensorFlow is already initialised (a test session): use the devices it has
        pass


def devices() -> list[str]:
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")]


def load_data(run: Run) -> dict:
    """{"train": (x, y), "test": (x, y)}, images in [0, 1], cut to the profile's (and --limit's) sizes."""

    def load():
        p = run.profile
        if p.dataset == "digits":
            from tfadv.datasets.digits import load_digits

            x_train, y_train, x_test, y_test = load_digits(seed=run.seed)
        else:
            from tfadv.datasets.tfds_data import load_tfds

            x_train, y_train = load_tfds("mnist", "train", data_dir=run.data_dir)
            x_test, y_test = load_tfds("mnist", "test", data_dir=run.data_dir)
            x_train, x_test = x_train / 255.0, x_test / 255.0
        n_train, n_test = run.capped(p.train_images), run.capped(p.test_images)
        return {"train": (x_train[:n_train].astype("float32"), y_train[:n_train]),
                "test": (x_test[:n_test].astype("float32"), y_test[:n_test])}

    return run.cached("data", load)


def model_artifact(run: Run, cell: dict) -> str:
    return f"models/{cell['experiment']}_kappa{cell['kappa']}_seed{cell['seed']}_steps{cell.get('steps', 0)}" \
           f"_s{cell.get('staleness', 0)}.weights.h5"


def examples_artifact(cell: dict) -> str:
    """The adversarial test images a strength cell crafted with each of its attacks."""
    return f"examples/{cell['experiment']}_kappa{cell['kappa']}_seed{cell['seed']}_steps{cell['steps']}.npz"


def finished_artifact(run: Run, name: str, source: dict):
    path = run.find_artifact(name)
    if path is None:
        raise FileNotFoundError(f"{name} of {source} is missing although its cell is finished: delete that cell's "
                                f"file in {run.out / 'cells'} to rerun it")
    return path


def load_net(run: Run, source: dict):
    """A finished strength cell's model (inference only)."""
    p = run.profile
    model = training.adversarial_model(p, source["kappa"], seed_of(run, source["seed"]), compile=False)
    model.load_weights(finished_artifact(run, model_artifact(run, source), source))
    return model


def load_examples(run: Run, source: dict) -> dict:
    return training.load_examples(finished_artifact(run, examples_artifact(source), source))


def _trained(run: Run, cell: dict, staleness: int | None) -> dict:
    """Train one model (strength or staleness cell), keep its weights, measure it on the test images."""
    from tfadv.experiments import atomic

    p, data = run.profile, load_data(run)
    seed = seed_of(run, cell["seed"])
    steps = run.capped(cell.get("steps", p.train_steps))
    log_every = min(p.log_every, steps)
    batch = min(run.capped(p.batch_size), len(data["train"][0]))
    panel = p.panel_kappas if staleness is None else (cell["kappa"],)
    # One set of compiled attacks for the curves and the final numbers, on a copy of the net shared by the
    # process's cells (tracing costs more than the attacks); made before the net (see attacked_copy).
    net, made = training.attacked_copy(run, sorted({*panel, cell["kappa"]}), seed + EVAL_SEED)
    model = training.adversarial_model(p, cell["kappa"], seed, staleness=staleness, batch_size=batch)
    # The search's curves are drawn nowhere and the staleness claims read the train split only: not logged.
    search = staleness is None and cell["steps"] != p.train_steps
    logged = {} if search else {key: a for key, a in made.items() if key[0] == training.PANEL and key[1] in panel}
    splits = ("train",) if staleness is not None else ("train", "test")
    model, curves, cpu = training.train_and_log(run, cell, data, model=model, steps=steps, log_every=log_every,
                                                logged=logged, batch_size=batch, seed=seed, splits=splits, net=net)
    atomic.save_weights(model, run.artifact(model_artifact(run, cell)))
    examples = {} if staleness is None else None
    training.copy_weights(model, net)
    results = training.measure(net, *data["test"], made, split="test", keep=examples)
    if examples is not None:
        training.save_examples(run.artifact(examples_artifact(cell)), examples)
    results.append({"split": "train", "attack": "", "attack_kappa": 0, "metric": "cpu_seconds", "value": cpu, "n": 0})
    return {"results": results, "curves": curves}


def _transfer(run: Run, cell: dict) -> list[dict]:
    """Table 1: each target net attacked with its own kappa, the examples crafted on every source net. The
    strength cells crafted them (the same attack and seed on the same test images): only forward passes here,
    and the diagonal is the white-box accuracy of the strength cell by construction."""
    from tfadv.evaluation.clean import accuracy

    p, data = run.profile, load_data(run)
    _, y = data["test"]
    targets, sources = transfer_nets(p, cell["steps"])
    nets = {(k, n): strength_cell(k, cell["seed"], n) for k, n in dict.fromkeys(targets + sources)}
    examples = {net: load_examples(run, source) for net, source in nets.items()}
    rows = []
    for target in targets:
        model = load_net(run, nets[target])
        kappa = target[0]
        for source in dict.fromkeys([target, *sources]):
            x_adv = examples[source][training.example_key(training.PANEL, kappa)]
            rows.append({"metric": "transfer_accuracy", "target_kappa": kappa, "source_kappa": source[0],
                         "source_steps": source[1], "attack_kappa": kappa, "white_box": source == target,
                         "value": accuracy(model, x_adv, y), "n": len(y)})
    return rows


def _asynchronous(run: Run, cell: dict) -> dict:
    """tfadv.training.asynchronous: `workers` attack workers feeding one trainer (0: synchronous)."""
    from tfadv.datasets.pipeline import training_dataset
    from tfadv.training.asynchronous import train_async

    p, data = run.profile, load_data(run)
    baseline = cell["experiment"] == BASELINE
    kappa = cell["kappa"]
    size = p.baseline_step_size if baseline else training.step_size(p.eps, kappa)
    batch = min(run.capped(p.baseline_batch_size if baseline else p.batch_size), len(data["train"][0]))
    steps = run.capped(p.baseline_steps if baseline else p.async_steps)
    seed = seed_of(run, 0)
    model = training.compile_model(training.base_model(p, seed), p)
    batches = training_dataset(*data["train"], batch, seed=seed, drop_remainder=True).repeat()
    started = time.process_time()
    result = train_async(model, lambda m: training.pgd(m, p, kappa, size, seed), batches, steps=steps,
                         num_workers=0 if baseline else cell["workers"], refresh_every=min(p.refresh_every, steps),
                         devices=devices(), verbose=run.show_progress)
    cpu = time.process_time() - started
    summary = {k: v for k, v in result.summary().items() if k != "workers"}
    rows = [{"split": "train", "attack": "", "attack_kappa": 0, "metric": k, "value": float(v), "n": 0}
            for k, v in {**summary, "cpu_seconds": cpu, "steps": steps, "batch_size": batch}.items()]
    made = training.attacks(model, p, (), seed + EVAL_SEED)
    rows += training.measure(model, *data["test"], made, split="test")
    ages = result.steps["staleness"].value_counts().sort_index()
    return {"results": rows, "async_staleness": [{"measured_staleness": int(s), "batches": int(c)}
                                                  for s, c in ages.items()]}


def run_cell(cell: dict, run: Run):
    kind = cell["experiment"]
    if kind == STRENGTH:
        return _trained(run, cell, staleness=None)
    if kind == STALENESS:
        return _trained(run, cell, staleness=cell["staleness"])
    if kind == TRANSFER:
        return _transfer(run, cell)
    if kind in (ASYNC, BASELINE):
        return _asynchronous(run, cell)
    if kind in (AUTOATTACK, MASKING):
        from reproduce.efficient import beyond

        return beyond.autoattack(run, cell) if kind == AUTOATTACK else beyond.masking(run, cell)
    raise ValueError(f"unknown experiment {kind!r} in cell {cell}")
