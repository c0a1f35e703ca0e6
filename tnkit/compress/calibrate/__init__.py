"""Calibration: input statistics of linear layers (``calibration``) and block-by-block
compression on the inputs the compressed blocks produce (``sequential``)."""
