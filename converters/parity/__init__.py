"""Parity: the inputs a check feeds (``inputs``, ``samples``), the runners that execute any format on them
(``runners``), the comparison and its report (``check``), and where a failed conversion first diverges
(``divergence``)."""
