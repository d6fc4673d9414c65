"""Accuracy on real data: ``zoo eval NAME --format F --data PATH``.

``data`` reads a labelled data set from a local folder in the usual layouts (an image folder per class,
JSONL or CSV of text and label, a Hugging Face ``datasets`` directory saved with ``save_to_disk``); it
never downloads anything. ``metrics`` holds the task metrics (top-1/top-5, accuracy, macro F1, exact
match, WER). ``evaluate`` runs the source model and each format on the same batches and stores the
figures per artifact digest (``zoo.db.evaluations``), beside the content-addressed artifact, never in it.
"""
