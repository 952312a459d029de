"""Engine wing: a model turned into text — loading (bundled GGUF, Hub id, adapters), sampling,
streaming, continuous batching, the remote and llama.cpp engines, chat templates. It knows
the store (for adapters' records) and nothing above."""
