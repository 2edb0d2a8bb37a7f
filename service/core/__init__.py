"""The numerical core: pure NumPy, no web imports.

Modules: ``regularizers``, ``activations``, ``losses``, ``dense``, ``network``;
``errors`` holds the typed errors the web layer turns into 4xx responses and
``numeric`` the dtype and reduction helpers every module shares.
"""
