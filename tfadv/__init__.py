"""tfadv: adversarial attacks and adversarial training for TensorFlow 2 / Keras 3.

The engine: `attacks` (FGM, PGD, APGD, Square, FAB), `geometry` (steps, projections, random starts),
`labels` (the one way labels are read), `losses` (the attack loss), `precision` (dtype policies, overflow),
`evaluation` (robust accuracy), `training` (adversarial `train_step` models), `models`, `datasets`. Beside
it: `analysis` (the measurement tools the papers use: Hessian power iteration, boundary tilting,
corruptions, the batch-size settings), `experiments` (what the paper runners in `reproduce/` share) and
`benchmarks`.
"""
__version__ = "0.1.0"
