"""Coding descriptions in bulk and one at a time: files (`batch`) and the Predict page's rules (`predicting`)."""
