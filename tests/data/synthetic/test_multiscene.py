"""Tests of densecal.data.synthetic.multiscene: single-garment oracle, label rules, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from densecal.data.synthetic.fashion_mnist import load_garments
from densecal.data.synthetic.multiscene import MultiSceneParams, make_multi_scene
from densecal.data.synthetic.scene import make_scene
from densecal.data.synthetic.textures import BACKGROUND_NAMES, load_texture
from densecal.errors import DensecalInputError

GARMENTS, CLASSES = load_garments("test")
BACKGROUNDS = [load_texture(name) for name in BACKGROUND_NAMES[:3]]


def test_one_garment_matches_the_demo_scene() -> None:
    params = MultiSceneParams(n_garments=(1, 1))
    scene = make_multi_scene(np.random.default_rng(4), GARMENTS, CLASSES, BACKGROUNDS, 32,
                             params)
    rng = np.random.default_rng(4)  # replay the draws: n, pick, then the demo's own scene
    rng.integers(1, 2)
    pick = int(rng.choice(len(GARMENTS), size=1, replace=True)[0])
    image, alpha = make_scene(rng, GARMENTS[pick], BACKGROUNDS, 32, params.scene)
    assert np.array_equal(scene.image, image)
    expected = np.where(alpha >= 0.5, CLASSES[pick] + 1, 0)
    assert np.array_equal(scene.label, expected)
    info = scene.garments[0]
    assert info.cls == CLASSES[pick] and info.visible_fraction == pytest.approx(1.0)
    assert info.area_fraction == pytest.approx(float(alpha.sum()) / 32**2, rel=1e-6)
    assert info.labelled_pixels == int((alpha >= 0.5).sum())


def test_labels_instances_and_info_are_consistent() -> None:
    for seed in range(6):
        scene = make_multi_scene(np.random.default_rng(seed), GARMENTS, CLASSES, BACKGROUNDS,
                                 48)
        n = len(scene.garments)
        assert 2 <= n <= 4
        assert scene.image.shape == (48, 48, 3) and scene.label.dtype == np.uint8
        assert scene.garments[-1].visible_fraction == pytest.approx(1.0)  # topmost
        for k, info in enumerate(scene.garments):
            owned = scene.instance == k
            assert (scene.label[owned] == info.cls + 1).all()
            assert info.labelled_pixels == int(owned.sum())
            assert 0.0 <= info.visible_fraction <= 1.0 + 1e-9 and 0.0 <= info.contrast <= 1.0
        assert (scene.instance[scene.label == 0] == -1).all()
        labels_present = set(np.unique(scene.label).tolist()) - {0}
        assert labels_present <= {g.cls + 1 for g in scene.garments}


def test_deterministic() -> None:
    a = make_multi_scene(np.random.default_rng(9), GARMENTS, CLASSES, BACKGROUNDS, 32)
    b = make_multi_scene(np.random.default_rng(9), GARMENTS, CLASSES, BACKGROUNDS, 32)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert a.garments == b.garments


def test_occlusion_lowers_visible_fraction() -> None:
    # two copies of one garment at the same place would be fully occluded; over many seeds
    # some lower garment must be partly hidden, and the top one never is
    fractions = [g.visible_fraction
                 for s in range(10)
                 for g in make_multi_scene(np.random.default_rng(s), GARMENTS, CLASSES,
                                           BACKGROUNDS, 32).garments[:-1]]
    assert min(fractions) < 0.9


def test_bad_input() -> None:
    with pytest.raises(DensecalInputError, match="n_garments"):
        MultiSceneParams(n_garments=(3, 2))
    with pytest.raises(DensecalInputError, match="garments"):
        make_multi_scene(np.random.default_rng(0), GARMENTS[:2], CLASSES[:3], BACKGROUNDS, 32)
