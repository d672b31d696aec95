"""The Streamlit adapter, the only subpackage that imports Streamlit.

Modules: `caches` (shared caches), `picker` (model picker and sidebar), `state` (kept widget state),
`widgets` (pieces several pages draw), `links`, `figures`, `serving` (the app as a server, for tests and benchmarks).
"""
