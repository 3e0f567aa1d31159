"""Seeded, deterministic synthetic datasets built from bundled real images: Fashion-MNIST garments
(:mod:`~.fashion_mnist`) on scikit-image textures (:mod:`~.textures`) composed into scenes
(:mod:`~.scene`, :mod:`~.multiscene`): the demo scenes and their OOD split (:mod:`~.demo`,
:mod:`~.ood`), CAR's injected-ambiguity scenes (:mod:`~.ambiguity`), the fine-grained
(:mod:`~.finegrained`) and multi-label (:mod:`~.multilabel`) recognition scenes, and CAR's 1-d toy
(:mod:`~.toy`)."""
