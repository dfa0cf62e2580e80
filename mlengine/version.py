"""The package version; image tags derive from it (see mlengine.constants.image_for)."""

__version__ = "0.1.0"
