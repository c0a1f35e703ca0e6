"""The recipes: :func:`~tnkit.compress.compress_model` and its methods (``pipeline``), the
automatic method's steps (``recipe``), width pruning (``prune``), evaluation
(``evaluate``) and per-layer sensitivity and entanglement profiles (``sensitivity``)."""
