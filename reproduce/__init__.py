"""One runner per paper: `python -m reproduce.<key> --profile paper|demo|smoke`.

A runner computes on the CPU kernels TensorFlow chooses: oneDNN's from AVX-512 on, its own below. On an
AVX2 CPU `TF_ENABLE_ONEDNN_OPTS=1` turns oneDNN on (the efficient demo's PGD-16 training step 317 ms
against 518 ms, one thread), but there its single-threaded Conv2DBackpropFilter corrupted the heap for a
1x1 stride-2 convolution with 3 or 4 input channels (2026-12-05, TensorFlow 2.21: freefast's smoke profile,
PreActResNet18 at width 4, crashed in its first epoch), so the runners do not turn it on for you. Each
cell records which kernels computed it (tf_kernels), and a report warns on a mix.
"""
