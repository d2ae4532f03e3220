"""tfadv.training.distributed.train under MultiWorkerMirroredStrategy: two worker processes on loopback.

Run as a script, this file is one worker: `python test_training_multiworker.py INDEX PORT0 PORT1 OUT`.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
WORKER_TIMEOUT_S = 180


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_to_identical_weights(tmp_path):
    ports = free_ports(2)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, str(i), str(ports[0]), str(ports[1]), str(tmp_path)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=WORKER_TIMEOUT_S)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for i, worker in enumerate(workers):
        assert worker.returncode == 0, f"worker {i} failed:\n{outputs[i][-3000:]}"

    results = [np.load(tmp_path / f"worker{i}.npz") for i in range(2)]
    initial = np.load(tmp_path / "worker0_initial.npz")
    assert results[0].files == results[1].files
    for key in results[0].files:
        np.testing.assert_array_equal(results[0][key], results[1][key])  # gradients were all-reduced
    assert any(not np.allclose(initial[k], results[0][k]) for k in initial.files)
    history = json.loads((tmp_path / "worker0_history.json").read_text())
    assert history["replicas"] == 2
    assert len(history["adv_loss"]) == 2 and all(np.isfinite(history["adv_loss"]))
    assert set(history) == {"adv_loss", "adv_accuracy", "replicas"}


def worker(index: int, port0: int, port1: int, out: Path) -> None:
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port0}", f"127.0.0.1:{port1}"]},
        "task": {"type": "worker", "index": index},
    })
    import tensorflow as tf
    import keras

    from tfadv.training import FastAdversarialModel
    from tfadv.training.distributed import train

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras.utils.set_random_seed(0)  # same initial weights on both workers
    with strategy.scope():
        inputs = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        h = keras.layers.BatchNormalization()(h)
        outputs = keras.layers.Dense(3)(keras.layers.Flatten()(h))
        model = FastAdversarialModel(inputs, outputs, eps=0.1, alpha=0.125, seed=1, weight_decay=5e-4)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    if index == 0:
        np.savez(out / "worker0_initial.npz", **{v.path: v.numpy() for v in model.trainable_variables})
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 64)
    x = np.clip(rng.random((64, 8, 8, 1)) * 0.5 + y[:, None, None, None] * 0.25, 0, 1).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)
    history = train(model, dataset, epochs=2, steps_per_epoch=3, strategy=strategy, verbose=False)
    np.savez(out / f"worker{index}.npz", **{v.path: v.numpy() for v in model.trainable_variables})
    if index == 0:
        history["replicas"] = strategy.num_replicas_in_sync
        (out / "worker0_history.json").write_text(json.dumps(history))


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
