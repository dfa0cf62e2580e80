"""mlengine: a self-hostable Cloud ML Engine built from Kubeflow Pipelines components."""

from mlengine.version import __version__

__all__ = ["__version__"]
