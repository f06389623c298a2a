"""Retrieval over the company's documents: load, chunk, embed, index (faiss + BM25), search.

Importing this package is cheap: torch, faiss and sentence-transformers are imported lazily by the
modules that need them (`rag.embedding`, `rag.index`), never at package import.
"""
