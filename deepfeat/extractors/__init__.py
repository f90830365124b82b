"""Feature extractors: a registry of image CNNs and audio models behind one interface."""
from .base import Extractor, create_extractor, extractor_names, get_extractor_class, register_extractor

__all__ = ["Extractor", "create_extractor", "extractor_names", "get_extractor_class", "register_extractor"]
