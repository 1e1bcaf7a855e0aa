"""The computational core: no napari or Qt imports, usable from scripts and clusters.

Modules, one idea each:

- :mod:`.acquisition` settings (pixel size, PSF, L, camera), unit conversions;
  :mod:`.estimate` settings estimated from the frames themselves
- :mod:`.optics` PSF and the acquisition operator ``A = S_L K``
- :mod:`.simulate` emitters, filaments, camera frames, noise, paper test scenes
- :mod:`.training_data`, :mod:`.network`, :mod:`.losses`, :mod:`.training`, :mod:`.model_io`
- :mod:`.predict` streaming inference; :mod:`.frames` reading, selecting and fixing
  frames (hot, dead, NaN pixels, beads); :mod:`.localize` maps -> localizations
- :mod:`.photometry` photon counts and position fits on the camera frames
- :mod:`.cel0` the CEL0-IRL1 solver
- :mod:`.metrics` matching and scores; :mod:`.render` super-resolved images
- files: :mod:`.columns` the localization tables' column names and limits; :mod:`.tiff_stack`
  TIFF stacks read lazily; :mod:`.localization_csv` localization CSVs read;
  :mod:`.outputs` files written all or nothing (CSV, TIFF); :mod:`.io` gathers their
  public names for scripts
- :mod:`.devices` CPU/CUDA and precision choice; :mod:`.cancel` cancel flags;
  :mod:`.progress` time-left texts; :mod:`.defaults` the defaults and choices the
  command line names (without importing torch)
"""

from .acquisition import ISBI2013, Acquisition

__all__ = ["Acquisition", "ISBI2013"]
