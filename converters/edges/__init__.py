"""The edges of the conversion graph, one module per source framework: each ``@edge`` function reads a
source artifact and writes only under the directory it is given (no network, no registry)."""
