"""The answer service: the FastAPI app (`service.app.create_app`), its routes (`service.api`), answering
(retrieve, prompt, generate, check, cite, record), the generation backends (llama.cpp, vLLM,
transformers), authentication, metrics, backups and the background trainer's starter. Settings live in
core/, the command line in cli/.

Importing this package must not import torch or transformers; the generator imports them lazily.
"""
