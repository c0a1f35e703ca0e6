"""Models on disk: compressed models as safetensors and JSON (``serialize``), loading
models and building tiny ones for tests (``models``), plain dense copies (``export``)."""
