"""Keras reference vectors (``vectors/*.json``), their generator and a small loader."""
