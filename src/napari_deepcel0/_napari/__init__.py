"""The napari plugin: a thin layer over :mod:`napari_deepcel0.core`.

Readers, a writer, sample data and six dock widgets (Acquisition, Train DeepCEL0,
Localize, CEL0-IRL1 compare, Ground-truth matching, Export), contributed through the
npe2 manifest ``napari_deepcel0/napari.yaml``. Every layer this plugin makes uses
nanometres as world units (see :mod:`.layers`); long computations run in napari
``thread_worker`` threads (see :mod:`.jobs`).
"""
