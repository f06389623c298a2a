"""The answer service: settings, the `kbloop` CLI root, and (later) the FastAPI app.

Importing this package must not import torch or transformers; the generator imports them lazily.
"""
