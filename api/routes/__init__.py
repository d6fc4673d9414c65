"""Thin route modules, one per resource; each delegates to zoo.service.core."""
