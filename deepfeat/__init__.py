"""deepfeat: audio → mel images → frozen pretrained networks → HDF5 features → classical classifiers."""
__version__ = "0.1.0"

from .threads import prefer_passive_wait as _prefer_passive_wait

# Before torch is imported: its OpenMP threads sleep rather than spin when they wait (see deepfeat.threads).
_prefer_passive_wait()
