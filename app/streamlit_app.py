"""AttnRes Lens: entry point (`streamlit run app/streamlit_app.py`)."""

import streamlit as st

st.set_page_config(page_title="AttnRes Lens", layout="wide")
st.title("AttnRes Lens")
st.write("See what Attention Residuals do inside a language model.")
