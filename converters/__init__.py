"""Converters: one module per edge. A converter reads a source artifact and
writes only under the directory it is given; no network, no registry. Parity is
checked separately (zoo.converters.parity.check)."""
