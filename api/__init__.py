"""The HTTP service (FastAPI), thin over zoo.service; see docs/service.md."""
