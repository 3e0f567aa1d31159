"""Datasets: folder datasets of (image, mask) pairs, file readers, the bundled demo scenes.

- :mod:`~densecal.data.readers`: ``read_image``, ``read_mask``, ``read_label``,
  ``read_prediction``.
- :mod:`~densecal.data.pairs`: pairing files by stem (``find_pairs``, ``find_prediction_pairs``).
- :mod:`~densecal.data.folder`: ``FolderDataset`` and ``split_indices``.
- :mod:`~densecal.data.demo`: the demo scenes (Fashion-MNIST garments on scikit-image textures)
  and their OOD split; ``write_demo_dataset`` writes them as folder datasets.
- :mod:`~densecal.data.brain`: 2-D slices of the MNI152 template with soft grey/white-matter
  truth (``write_brain_dataset``; extra ``medical``).
- :mod:`~densecal.data.nifti`: users' NIfTI volumes to 2-D slice datasets
  (``convert_nifti_folder``); :mod:`~densecal.data.slicing`: the slicing helpers both share.
"""

from __future__ import annotations

from densecal.data.brain import (
    BRAIN_CLASS_NAMES,
    BrainSlice,
    BrainSliceConfig,
    make_brain_slices,
    write_brain_dataset,
)
from densecal.data.demo import SPLITS, DemoConfig, make_demo_split, write_demo_dataset
from densecal.data.fashion_mnist import CLASS_NAMES, load_garments
from densecal.data.folder import FolderDataset, split_indices
from densecal.data.nifti import (
    NiftiPair,
    NiftiSlice,
    convert_nifti_folder,
    find_nifti_pairs,
    nifti_slices,
)
from densecal.data.ood import load_ood_textures, make_ood_scene
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
from densecal.data.scene import SceneLayers, SceneParams, make_scene, render_scene_layers
from densecal.data.textures import BACKGROUND_NAMES, OOD_TEXTURE_NAMES, load_texture

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
