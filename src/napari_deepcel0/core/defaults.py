"""Defaults and choices that the command line names in its ``--help``, in a module
that does not import torch, so that ``deepcel0 --help`` and ``deepcel0 evaluate``
start without loading it. :mod:`.localize`, :mod:`.cel0` and :mod:`.predict`, which use them, export
them under their own names (``localize.METHODS``, ``cel0.DEFAULT_LAM``, ...)."""

#: matching tolerances reported by default (nm): the paper's 50/100/150 and the SMLM
#: challenges' 250
TOLERANCES_NM = (50.0, 100.0, 150.0, 250.0)

#: ways to read molecules off a fine-grid map (:func:`.localize.extract_localizations`)
READ_METHODS = ("peaks", "components")

#: Default CEL0 lambda (on max-normalised frames): best Jaccard at 50 nm (peaks reading)
#: of the paper's sweep on the ISBI 2013 high-density stack (docs/cel0.md). Data of
#: another density or SNR need their own sweep.
CEL0_LAM = 1e-3
#: Ways to read molecules off a CEL0 map: the two above and the reference's "every
#: non-zero pixel is a molecule".
CEL0_READINGS = READ_METHODS + ("pixels",)
#: The reading used by default (docs/cel0.md compares them).
CEL0_METHOD = "peaks"
#: Default detection threshold on the normalised CEL0 map: every positive value (IRL1
#: sets pixels exactly to 0; docs/cel0.md checks that no tiny values remain).
CEL0_THRESHOLD = 0.0
#: IRL1 (outer) and FISTA (inner) iteration caps and the relative-change tolerance of
#: both loops: the reference implementation's
CEL0_MAX_OUTER = 200
CEL0_MAX_INNER = 200
CEL0_TOL = 1e-5
#: the lambda sweep's defaults: the paper's 30 lambdas log-spaced in [1e-3, 1], scored by
#: the Jaccard index at 50 nm on 8 frames drawn at random
SWEEP_LAMS = 30
SWEEP_LAM_RANGE = (1e-3, 1.0)
SWEEP_FRAMES = 8
SWEEP_TOL_NM = 50.0
#: a frame's range is at least this many of its noise standard deviations
#: (:func:`.frames.frame_noise_adu`; :func:`.predict.scale_to_unit_range`): a frame
#: without a molecule, or with only molecules this faint, is not stretched until its noise
#: fills [0, 1] and looks like molecules. The range of pure noise is about 7.1 standard
#: deviations on 64 x 64 frames; the least frame of ISBI 2013 spans 52, those of the
#: paper's Table 1 at 10 dB 15-22 (median 18). ``python benchmarks/frame_range_floor.py``
#: (docs/benchmarks.md): empty 64 x 64 frames 1.55 -> 0.23 false molecules a frame; one
#: molecule of 150-300 photons a frame, Jaccard at 50 nm 21 -> 68 %. Chosen between 16
#: and 25: at 20 empty frames gave 0.12 and that molecule 73 %, but Table 1 2b (10 dB)
#: fell 0.4 point at 50 nm and below the paper's row at 100 nm; at 18 it loses 0.1
FRAME_RANGE_FLOOR = 18.0
#: the highest emitter density simulations take (per um^2 and frame): one emitter per
#: 100 x 100 nm, ten times ISBI 2013's high density and beyond what any method resolves;
#: 1e5 ran the demo out of memory in the scoring (millions of molecules within 50 nm),
#: and trained for minutes on data of no use (a loss of 1e7)
MAX_DENSITY_PER_UM2 = 100.0
