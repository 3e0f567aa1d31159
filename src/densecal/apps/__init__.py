"""End-to-end jobs with a model in the loop (MONAI's ``apps/``): predict, evaluate a
checkpoint, calibrate, the demo and the benchmark. Each CLI verb calls one function here (or in
:mod:`densecal.evaluation` when no model is involved)."""
