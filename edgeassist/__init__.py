"""edgeassist: an on-device assistant for the terminal, on small quantized Qwen 3.5 models."""

__version__ = "0.1.0"
