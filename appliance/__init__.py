"""The appliance: a preconfigured box serving local LLM chat, embeddings and images."""

__version__ = "0.1.0"
