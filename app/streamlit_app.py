"""AttnRes Lens: entry point (`streamlit run app/streamlit_app.py`); one page per view in app/views/."""

import os
import sys
from pathlib import Path

# torch's CPU worker threads spin while waiting by default; started from Streamlit's script
# threads they then fight each other and training and probes run 5-20x slower on a busy CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # so `import attnres, probes, figures, app` works from anywhere
    sys.path.insert(0, str(REPO_ROOT))

import streamlit as st  # noqa: E402

import app.warm  # noqa: E402  (every session's first run waits here until it has run once)

PAGES = [
    ("views/compare.py", "Compare", ":material/compare:", True),
    ("views/depth.py", "Depth routing", ":material/grid_on:", False),
    ("views/dilution.py", "Signal dilution", ":material/trending_up:", False),
    ("views/retrieval.py", "Retrieval", ":material/hub:", False),
    ("views/attribution.py", "Attribution & ablation", ":material/science:", False),
    ("views/lens.py", "Logit lens", ":material/visibility:", False),
    ("views/dynamics.py", "Training dynamics", ":material/timeline:", False),
    ("views/training_lab.py", "Training lab", ":material/model_training:", False),
    ("views/learn.py", "Learn: signal dilution", ":material/school:", False),
    ("views/inspector.py", "Checkpoint inspector", ":material/upload_file:", False),
]


def main() -> None:
    st.set_page_config(page_title="AttnRes Lens", layout="wide")
    pages = [st.Page(path, title=title, icon=icon, default=default) for path, title, icon, default in PAGES]
    page = st.navigation(pages)
    home = page is pages[0]
    if not home:  # the libraries only other pages need (app/warm.py); at once when already imported
        app.warm.import_the_rest()
    page.run()
    if home:  # after the home page has been drawn: this session's next page finds them imported
        app.warm.import_the_rest()


main()
