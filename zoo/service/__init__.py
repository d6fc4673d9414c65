"""The job service behind ``zoo serve`` and ``zoo worker``: jobs in the registry database (``jobs``), who
runs them (``dispatch``: a local pool, or Celery over Redis in ``broker``), each attempt in its own
process (``execution`` starts ``zoo.runner``), tokens, metrics, the hub mirror, and ``core.Service`` that
ties them together for the HTTP routes."""
