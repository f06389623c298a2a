"""Text generation behind one interface: the batching engine over a transformers model (CPU or CUDA).

A vLLM (or other) backend implements the same `Generator` protocol (service/generation/base.py).
"""
