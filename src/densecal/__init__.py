"""densecal: calibrated dense classification for PyTorch.

Calibration losses (SC-BCE and ASLP, label smoothing, ...), exact constant-memory pixel calibration
metrics (ECE, MCE, OE, ACE, Brier, NLL, reliability diagrams), and the training methods of five
papers, with a command-line tool on top (``densecal --help``).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
