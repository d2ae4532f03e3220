"""tfadv: adversarial attacks and adversarial training for TensorFlow 2 / Keras 3.

Modules: `attacks` (FGM, PGD), `geometry` (steps, projections, random starts), `losses` (the attack loss),
`evaluation` (robust accuracy), `training` (adversarial `train_step` models), `models`, `datasets`, and the
runner infrastructure (`runner`, `results`, `report`, `plots`) shared by the paper reproductions.
"""
__version__ = "0.1.0"
