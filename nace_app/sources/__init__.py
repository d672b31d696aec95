"""Where models and data come from: S3, HTTP, local folders, MLflow runs and the embedded demo (`resolve`).

The download cache, its checks and the fallback rule for the configured defaults live here too.
"""
