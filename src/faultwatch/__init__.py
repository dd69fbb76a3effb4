"""faultwatch: notebook-first MLOps for rare-fault detection in signals."""

__version__ = "0.1.0"
