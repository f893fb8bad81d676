"""a2v: speech to talking-avatar video, locally or against an A2V API server."""

import os as _os

__version__ = "0.1.0"

# The renderer keeps both cores busy with its own pools (ffmpeg, onnxruntime); BLAS threads that
# numpy would start for the mel projection only spin against them (measured: 2x the CPU time).
# Set before numpy is imported anywhere in a2v; a user's own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")
