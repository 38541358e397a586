"""AttnRes Lens dashboard (Streamlit wiring only; measurements live in probes/, plots in figures/)."""
