"""FHIR R4 output: one Bundle per patient (``bundle.py``), the IPS document option (``ips.py``), the JSON pieces
both splice as polars expressions (``expressions.py``), code maps (``codes.py``, data in
core/reference_data/fhir_terminology.json) and the checks the FHIR models do not make (``rules.py``). The builder returns
rendered text; writing files is the FHIR sink's job (core/sinks/fhir.py)."""
from .bundle import PROFILES, BundleBuilder

__all__ = ["PROFILES", "BundleBuilder"]
