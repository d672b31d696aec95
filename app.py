"""NACE Explorer: page config, navigation over `app_pages/`, and the shared sidebar."""

from pathlib import Path

import streamlit as st

from nace_app.logs import configure_logging

# a local icon: an emoji or material icon would make every page load fetch a favicon from a CDN
st.set_page_config(page_title="NACE Explorer", page_icon=str(Path(__file__).parent / "nace_app/resources/favicon.png"),
                   layout="wide", initial_sidebar_state="auto")
configure_logging()

from nace_app import ui  # noqa: E402  (after logging is configured)

navigation = st.navigation(
    [
        st.Page("app_pages/predict.py", title="Predict", icon=":material/search:", default=True),
        st.Page("app_pages/review.py", title="Review", icon=":material/analytics:", url_path="review"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    ]
)
ui.share_the_cores()
ui.sidebar()
ui.fold_sidebar_on_narrow_screens()
navigation.run()
