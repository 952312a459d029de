"""Retrieval-augmented generation: parse uploads, chunk, embed, index, retrieve, answer, measure.

Modules: `parsing` (files -> text), `chunking` (text -> token-sized chunks), `embedder`
(all-MiniLM-L6-v2, offline), `store` (collections with atomic generations of FAISS + BM25),
`retrieval` (dense / BM25 / hybrid), `answer` (grounded prompts and citations), `evaluate`
(recall@k and MRR).
"""
