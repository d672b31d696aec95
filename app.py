"""NACE Explorer: page config, navigation over `app_pages/`, and the shared sidebar."""

from pathlib import Path


def main() -> None:
    import streamlit as st  # here, not at the top: a child process (spawn) re-imports this file, and needs no Streamlit

    from nace_app.settings.logs import configure_logging

    # a local icon: an emoji or material icon would make every page load fetch a favicon from a CDN
    st.set_page_config(page_title="NACE Explorer", layout="wide", initial_sidebar_state="auto",
                       page_icon=str(Path(__file__).parent / "nace_app/resources/favicon.png"))
    configure_logging()

    from nace_app.app import caches, picker  # after logging is configured

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


if __name__ == "__main__":  # a training run's child process (multiprocessing spawn) re-runs this file as __mp_main__
    main()
