"""The command-line front: ``tnkit compress``, ``profile``, ``eval`` and ``export``
(``cli``), the healing options (``cli_heal``) and the distributed options
(``cli_distributed``)."""
