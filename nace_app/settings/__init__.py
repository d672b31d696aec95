"""Configuration (environment, .env, Streamlit secrets), the one user-facing error, logging and cache files.

Modules: `config`, `errors`, `logs`, `cachefiles`. The bottom layer: it imports nothing else of `nace_app`.
"""
