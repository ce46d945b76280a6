"""align-data: speech-text alignment corpora for speech LLMs, and an adapter trainer that consumes them."""

__version__ = "0.1.0"
