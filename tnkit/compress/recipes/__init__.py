"""The recipes: :func:`~tnkit.compress.compress_model` and its methods (``pipeline``), the
automatic method's steps (``recipe``), width pruning (``prune``), evaluation
(``evaluate``), per-layer sensitivity and entanglement profiles (``sensitivity``) and the
whole ``tnkit compress`` recipe as one call, :func:`~tnkit.compress.run_compress` (``run``)."""
