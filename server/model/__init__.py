"""Model runtime: the registry of GGUF models, FIM templates, the llama.cpp worker and post-processing."""
