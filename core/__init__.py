"""Medical Patients Generator engine: pure Python, no Streamlit (see DESIGN.md)."""
__version__ = "0.1.0"
