"""Design-space studies: recipes, data, the trainer, the study database and its executors.

Above `nn`, `space` and `analysis`; below `cli`. Torch is imported by the trainer and the
data loaders only, so the database and its status commands start without it.
"""

# The data sets a recipe trains on; here (not in data.py) so the CLI lists them without pydantic.
DATA_NAMES: tuple[str, ...] = ("digits", "cifar10", "cifar100", "imagefolder", "synthetic")
