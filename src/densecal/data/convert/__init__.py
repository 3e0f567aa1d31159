"""Converters of public and users' data into densecal's folder layouts: MNI152 brain slices
(:mod:`~.brain`), NIfTI volumes (:mod:`~.nifti`, sharing :mod:`~.slicing`), LIDC-IDRI pickles
(:mod:`~.lidc`), VOC 2007 (:mod:`~.voc`) and COCO 2014 (:mod:`~.coco`)."""
