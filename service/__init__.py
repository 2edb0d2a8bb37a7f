"""penalty-service: Keras-exact regularization penalties and gradients over HTTP."""

__version__ = "0.1.0"
