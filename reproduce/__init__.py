"""One runner per paper: `python -m reproduce.<key> --profile paper|demo|smoke`.

A runner is its process's entry point, so it picks TensorFlow's CPU kernels before TensorFlow loads:
oneDNN's, which TensorFlow turns on by itself only on CPUs with AVX-512 or newer. On an AVX2 CPU they ran
the efficient demo's PGD-16 training step 1.6 times faster (317 ms against 518 ms, one thread), and every
demo runs on oneDNN, as on the AVX-512 machine the README's numbers were measured on (its AVX-512 kernels
still round differently from the AVX2 ones). `TF_ENABLE_ONEDNN_OPTS=0` keeps
TensorFlow's own; each cell records which computed it (tf_kernels), and a report warns on a mix.
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
