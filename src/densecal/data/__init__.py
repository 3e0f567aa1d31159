"""Datasets: folder datasets of (image, mask) pairs, file readers, the bundled demo scenes.

- :mod:`~densecal.data.readers`: ``read_image``, ``read_mask``, ``read_label``,
  ``read_prediction``.
- :mod:`~densecal.data.pairs`: pairing files by stem (``find_pairs``, ``find_prediction_pairs``).
- :mod:`~densecal.data.folder`: ``FolderDataset`` and ``split_indices``.
- :mod:`~densecal.data.classification`: classification folders (single- and multi-label).
- :mod:`~densecal.data.transforms`: image tensors, resizing and augmentation.
- :mod:`~densecal.data.synthetic`: the bundled, seeded scenes (the demo scenes and their OOD
  split, ambiguity, fine-grained and multi-label scenes, CAR's toy).
- :mod:`~densecal.data.convert`: converters of public and users' data (MNI152 brain slices,
  NIfTI volumes, LIDC-IDRI, VOC 2007, COCO 2014).
"""

from __future__ import annotations

from densecal.data.convert.brain import (
    BRAIN_CLASS_NAMES,
    BrainSlice,
    BrainSliceConfig,
    make_brain_slices,
    write_brain_dataset,
)
from densecal.data.convert.nifti import (
    NiftiPair,
    NiftiSlice,
    convert_nifti_folder,
    find_nifti_pairs,
    nifti_slices,
)
from densecal.data.folder import FolderDataset, split_indices
from densecal.data.pairs import (
    IMAGE_DIR_NAMES,
    MASK_DIR_NAMES,
    Pair,
    find_images,
    find_mask_dir,
    find_pairs,
    find_prediction_pairs,
    find_predictions,
)
from densecal.data.readers import (
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    PREDICTION_EXTENSIONS,
    check_distribution,
    read_distribution,
    read_image,
    read_label,
    read_mask,
    read_prediction,
)
from densecal.data.synthetic.demo import SPLITS, DemoConfig, make_demo_split, write_demo_dataset
from densecal.data.synthetic.fashion_mnist import CLASS_NAMES, load_garments
from densecal.data.synthetic.ood import load_ood_textures, make_ood_scene
from densecal.data.synthetic.scene import SceneLayers, SceneParams, make_scene, render_scene_layers
from densecal.data.synthetic.textures import BACKGROUND_NAMES, OOD_TEXTURE_NAMES, load_texture

__all__ = [
    "BACKGROUND_NAMES",
    "BRAIN_CLASS_NAMES",
    "CLASS_NAMES",
    "IMAGE_DIR_NAMES",
    "IMAGE_EXTENSIONS",
    "MASK_DIR_NAMES",
    "MASK_EXTENSIONS",
    "OOD_TEXTURE_NAMES",
    "PREDICTION_EXTENSIONS",
    "SPLITS",
    "BrainSlice",
    "BrainSliceConfig",
    "DemoConfig",
    "FolderDataset",
    "NiftiPair",
    "NiftiSlice",
    "Pair",
    "SceneLayers",
    "SceneParams",
    "check_distribution",
    "convert_nifti_folder",
    "find_images",
    "find_mask_dir",
    "find_nifti_pairs",
    "find_pairs",
    "find_prediction_pairs",
    "find_predictions",
    "load_garments",
    "load_ood_textures",
    "load_texture",
    "make_brain_slices",
    "make_demo_split",
    "make_ood_scene",
    "make_scene",
    "nifti_slices",
    "read_distribution",
    "read_image",
    "read_label",
    "read_mask",
    "read_prediction",
    "render_scene_layers",
    "split_indices",
    "write_brain_dataset",
    "write_demo_dataset",
]
