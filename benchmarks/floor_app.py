"""The floor of a first view here: a trivial Streamlit page with two tiny plotly charts (no torch, no
computation), timed by ``benchmarks.first_view`` the same way as the dashboard."""

import plotly.graph_objects as go
import streamlit as st

st.title("Two tiny charts")
st.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[1.0, 3.0, 2.0])), key="line")
st.plotly_chart(go.Figure(go.Bar(x=["a", "b"], y=[1.0, 2.0])), key="bar")
