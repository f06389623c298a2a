"""The answer service: settings, the `kbloop` CLI root, the FastAPI app and the generation backends.

Importing this package must not import torch or transformers; the generator imports them lazily.
"""
