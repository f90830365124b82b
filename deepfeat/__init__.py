"""deepfeat: audio → mel images → frozen pretrained networks → HDF5 features → classical classifiers."""
__version__ = "0.1.0"
