"""The HTTP service (FastAPI), thin over zoo.pipeline. Not built yet: see issue 4."""
