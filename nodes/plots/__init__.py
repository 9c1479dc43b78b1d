"""Matplotlib figures written into run directories, one module per area (Agg backend, no screen)."""

import matplotlib

matplotlib.use("Agg")
