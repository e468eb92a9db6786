"""Medical Patients Generator engine: pure Python, no Streamlit (see the README, Project layout)."""
__version__ = "0.1.0"

from core.memory import configure_native_allocators as _configure_native_allocators

_configure_native_allocators()  # before anything imports polars or pyarrow
