"""The playground's engine: model loading, sampling, generation, training, retrieval, reasoning.

Nothing in this package imports gradio; every module is usable from a notebook or the CLI.
"""
