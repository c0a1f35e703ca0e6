"""The compressed linear layers, :class:`~tnkit.compress.MPOLinear` (``mpo_linear``) and
:class:`~tnkit.compress.LowRankLinear` (``lowrank``), and finding, reading and swapping
linear layers in a model (``surgery``)."""
