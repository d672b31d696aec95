"""A model: its two file formats, tokenization, the forward pass, the `Classifier` facade and opening one.

Modules: `formats`, `tokenization`, `forward`, `ranking`, `classifier`, `opening`.
"""
