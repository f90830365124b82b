"""Feature extractors: image CNNs and audio models behind one interface, found by discovery.

Each module of this package is one family of networks; it registers its extractor classes and
their weights files when imported. :mod:`.registry` finds the modules (and other packages'
``deepfeat.extractors`` entry points) on the first lookup.
"""
from .base import Extractor, TorchExtractor
from .registry import (ENTRY_POINT_GROUP, create_extractor, discover, extractor_names, get_extractor_class,
                       register_extractor, unavailable_extractors)

__all__ = ["ENTRY_POINT_GROUP", "Extractor", "TorchExtractor", "create_extractor", "discover", "extractor_names",
           "get_extractor_class", "register_extractor", "unavailable_extractors"]
