"""The ``zoo`` command line: ``main`` (the parser and the model commands), with the subcommands of the
cache (``cache``), the server (``server``) and the workers (``worker``) in modules of their own."""
