"""Benchmark scripts; run each as a module from the repository root (``make bench``)."""
