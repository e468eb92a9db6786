"""FHIR R4 output: one Bundle per patient (``bundle.py``), the IPS document option (``ips.py``), code maps
(``codes.py``, data in core/data/fhir_terminology.json) and the checks the FHIR models do not make
(``rules.py``)."""
from .bundle import PROFILES, BundleBuilder

__all__ = ["PROFILES", "BundleBuilder"]
