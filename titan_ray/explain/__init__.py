"""Explanations of learned models: gradient attributions over input windows (``gradients``), and the
torch thread count they and the nets run on (``threads``)."""
