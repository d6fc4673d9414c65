"""``zoo check``: every model of a project's manifest in every format it ships, converted and checked in
parallel within a memory budget, with accuracy on its data sets and a comparison with an earlier run.

``manifest`` reads ``zoo.toml`` / ``[tool.zoo]``; ``checks`` runs one check (convert, parity, accuracy);
``job`` runs one in its own process; ``run`` schedules them; ``reports`` writes the table, JSON, JUnit
XML, Markdown and the baseline comparison.
"""
