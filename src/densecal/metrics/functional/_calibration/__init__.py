"""The exact-histogram kernel behind :func:`densecal.metrics.functional.pixel_calibration`.

Private: only :mod:`densecal.metrics.functional.calibration` imports from here. One file a job,
read in this order:

- ``options``: the option enums and their validation (:class:`CalibrationOptions`);
- ``binning``: bin edges, the right-closed bin rule, fine cells and the bin arithmetic
  (ECE, MCE, OE from per-bin sums; equal-mass ACE from a fine histogram);
- ``numba_kernel``: the compiled one-pass histogram (numba; the torch path without it), with
  its eligibility rule;
- ``binary_kernel``: per-pixel statistics of binary maps (float, uint8 and bool paths);
- ``class_kernel``: the same for multi-class and multi-label maps (top-label and per class);
- ``binary_state`` / ``class_state``: the float64 sum states, their update and compute.
"""
