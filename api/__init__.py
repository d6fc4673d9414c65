"""The HTTP service (FastAPI), thin over zoo.service.core; see docs/service.md."""
