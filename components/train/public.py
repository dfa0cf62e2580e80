"""What other components may call in train: a tuning trial is a training run.

This is the one component-to-component dependency of the suite (tests/test_layers.py allows it
and nothing else): tune's trial builds a ``TrainConfig`` and calls ``train`` with it.
"""

from mlengine.components.train.model_module import check_model_module
from mlengine.components.train.trainer import TrainConfig, train

__all__ = ["TrainConfig", "check_model_module", "train"]
