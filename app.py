"""NACE Explorer: page config, navigation over `app_pages/`, and the shared sidebar."""

from pathlib import Path

import streamlit as st

from nace_app.settings.logs import configure_logging

# a local icon: an emoji or material icon would make every page load fetch a favicon from a CDN
st.set_page_config(page_title="NACE Explorer", page_icon=str(Path(__file__).parent / "nace_app/resources/favicon.png"),
                   layout="wide", initial_sidebar_state="auto")
configure_logging()

from nace_app.app import caches, picker  # noqa: E402  (after logging is configured)

navigation = st.navigation(
    [
        st.Page("app_pages/predict.py", title="Predict", icon=":material/search:", default=True),
        st.Page("app_pages/review.py", title="Review", icon=":material/analytics:", url_path="review"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    ]
)
st.set_page_config(page_title=f"{navigation.title} · NACE Explorer")  # each page its browser-tab title
caches.share_the_cores()
picker.sidebar()
picker.fold_sidebar_on_narrow_screens()
navigation.run()
