"""Run a source model and its converted formats on one labelled data set, and keep the figures.

The source is opened exactly as the pipeline opens it (``zoo.comparison.open_model``): the same
weights, the same reference runner. Every example goes through the model's own preprocessing (timm's
eval transform, the Hugging Face image processor's settings, keras.applications' ``preprocess_input``,
the model's tokenizer), and the source and every format are fed the very same arrays, batch by batch.

Results are stored per subject in ``zoo.db.evaluations``: the source model (its id and commit) and each
artifact (its digest), keyed by what decides the figures (the data set's sha256, the limit and split,
the tools' versions); an identical evaluation is answered from the table. The artifact's own files and
digest are never touched: ``zoo info`` and ``zoo check`` read the table.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from zoo import errors
from zoo.eval.data import Example, LabelledData, load_data
from zoo.eval.metrics import TASK_METRICS, classification_metrics, deltas, drop
from zoo.options import Options
from zoo.settings import Settings

SUPPORTED_TASKS = ("image-classification", "text-classification")
BATCH = {"image": 16, "text": 32}


class Subject:
    """One side of an evaluation: a runner, and how to name and store what it scored."""

    def __init__(self, label: str, run: Callable[[dict[str, Any]], list[Any]], key: str, describe: dict[str, Any]) -> None:
        self.label, self.run, self.key, self.describe = label, run, key, describe


def evaluate(name: str, formats: list[str], data_path: Path | str, settings: Settings, *, options: Options | None = None,
             limit: int | None = None, split: str | None = None, progress: Any = None) -> dict[str, Any]:
    """The source's figures on the data set and, per format, the artifact's and the delta (percentage points)."""
    from zoo.comparison import open_model
    from zoo.progress import quiet
    from zoo.remote import pull_anywhere

    progress = progress or quiet()
    data = load_data(data_path, limit=limit, split=split)
    source, opened = open_model(name, settings, progress)
    bench = Bench(source, opened, data, settings)
    options = options or Options()
    rows = []
    for fmt in formats:
        try:
            with progress.stage("pull", f"{name} as {fmt}"):
                result = pull_anywhere(name, replace(options, format=fmt).validated(), settings, progress=progress)
        except errors.ZooError as exc:  # one format that cannot be made does not hide the others' figures
            rows.append({"format": fmt, "error": exc.message, "error_code": exc.code, "hint": exc.hint})
            continue
        with progress.stage("evaluate", f"{fmt} on {len(data.examples)} examples"):
            rows.append(bench.artifact(result))
    return {"model": source.model_id, "revision": source.revision, "task": bench.task, "dataset": data.describe(),
            "source": bench.source_figures(), "formats": rows}


class Bench:
    """A source model and a data set, prepared once; candidates are scored against the same batches."""

    def __init__(self, source: Any, opened: Any, data: LabelledData, settings: Settings) -> None:
        self.source, self.opened, self.data, self.settings = source, opened, data, settings
        record = source.record
        self.task = record.task if record is not None else None
        if self.task not in SUPPORTED_TASKS:
            raise errors.UnsupportedError(
                f"zoo eval measures {' and '.join(SUPPORTED_TASKS)} models; {source.model_id} is {self.task or 'of no known task'}",
                hint="evaluate a classifier, or compare outputs with zoo parity")
        if not opened.classifier_outputs:
            raise errors.UnsupportedError(f"{source.model_id} has no classifier output to score")
        wanted = "image" if self.task == "image-classification" else "text"
        if data.kind != wanted:
            raise errors.UsageError(f"{source.model_id} is a {self.task} model but {data.path.name} holds {data.kind} examples",
                                    hint="pass an image folder for image models, JSONL/CSV text for text models")
        self.output = opened.output_names.index(opened.classifier_outputs[0])
        self.labels = class_indices(data, opened.labels)
        self._batches: list[dict[str, Any]] | None = None
        self._source: dict[str, Any] | None = None

    def batches(self) -> list[dict[str, Any]]:
        if self._batches is None:
            size = BATCH[self.data.kind]
            make = self._image_feeds if self.data.kind == "image" else self._text_feeds
            self._batches = [make(batch) for batch in self.data.batches(size)]
        return self._batches

    def scores(self, run: Callable[[dict[str, Any]], list[Any]]) -> Any:
        import numpy as np

        scores = np.concatenate([np.asarray(run(feeds)[self.output], dtype=np.float64) for feeds in self.batches()])
        scores = scores.reshape(len(self.labels), -1)
        if int(self.labels.max()) >= scores.shape[-1]:
            raise errors.UsageError(f"label index {int(self.labels.max())} is out of range: the model has {scores.shape[-1]} classes")
        return scores

    # --- the two sides -------------------------------------------------------------------------------------
    def source_figures(self) -> dict[str, Any]:
        """The source's figures and top-1 predictions (computed once, and stored)."""
        if self._source is None:
            subject = {"kind": "source", "model": self.source.model_id, "revision": self.source.revision}
            self._source = self._measure(subject, lambda: self.opened.reference)
        return self._source

    def artifact(self, result: Any) -> dict[str, Any]:
        """A pulled artifact's (a PullResult's) figures against the source's: metrics, delta, top-1 agreement."""
        return self.artifact_at(Path(result.path), format=result.format, digest=result.digest, verified=result.verified)

    def artifact_at(self, path: Path, *, format: str, digest: str, verified: bool) -> dict[str, Any]:
        """The artifact of this source model in ``format`` whose primary file is ``path``."""
        from zoo.converters.parity.runners import artifact_runner

        subject = {"kind": "artifact", "model": self.source.model_id, "revision": self.source.revision, "format": format,
                   "digest": digest, "verified": verified, "path": str(path)}
        return self.candidate(subject, lambda: artifact_runner(Path(path), self.opened.input_names, self.opened.output_names))

    def file(self, path: Path) -> dict[str, Any]:
        """A model file (one the project ships, say) against the source, keyed by the file's sha256."""
        from zoo.converters.parity.runners import artifact_runner
        from zoo.hashing import sha256_file, sha256_json
        from zoo.storage.artifacts import hash_tree

        path = Path(path)
        digest = sha256_file(path) if path.is_file() else sha256_json(hash_tree(path))
        subject = {"kind": "file", "model": self.source.model_id, "revision": self.source.revision,
                   "format": path.name, "digest": digest, "verified": None, "path": str(path)}
        return self.candidate(subject, lambda: artifact_runner(path, self.opened.input_names, self.opened.output_names))

    def candidate(self, subject: dict[str, Any], make_runner: Callable[[], Any]) -> dict[str, Any]:
        import numpy as np

        source = self.source_figures()

        def compare(row: dict[str, Any]) -> None:
            row["source"] = source["metrics"]
            row["delta"] = deltas(source["metrics"], row["metrics"])
            row["agreement"] = float(np.mean(np.asarray(source["predictions"]) == np.asarray(row["predictions"])))

        return self._measure(subject, make_runner, compare)

    def _measure(self, subject: dict[str, Any], make_runner: Callable[[], Any],
                 complete: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Figures for ``subject`` (completed by ``complete`` before they are stored), from the evaluations
        table when this exact evaluation was stored."""
        from zoo.eval import store

        key = store.evaluation_key(subject, self.data, self.settings)
        found = store.find(self.settings, key)
        if found is not None:
            return {**found, "cached": True}
        import numpy as np

        started = time.perf_counter()
        scores = self.scores(make_runner())
        row = {**subject, "task": self.task, "dataset": self.data.describe(),
               "metrics": classification_metrics(self.task, scores, self.labels),
               "predictions": np.argmax(scores, axis=-1).astype(int).tolist(),
               "seconds": round(time.perf_counter() - started, 3)}
        if complete is not None:
            complete(row)
        store.save(self.settings, key, row)
        return {**row, "cached": False}

    # --- feeds -------------------------------------------------------------------------------------------
    def _image_feeds(self, batch: list[Example]) -> dict[str, Any]:
        import numpy as np

        record = self.source.record
        images = [open_image(e.image) for e in batch]
        name = self.opened.input_names[0]
        if record.library == "keras":
            from zoo.converters.parity.inputs import keras_preprocess

            _, h, w, _ = record.input_spec[0]["shape"]
            pixels = np.stack([np.asarray(img.resize((w, h), resample=2), dtype=np.float32) for img in images])
            return {name: keras_preprocess(pixels, record.preprocessing.get("mode", "tf")).astype(np.float32)}
        from zoo.converters.parity.inputs import image_preprocessing
        from zoo.converters.parity.samples import preprocess_images

        return {name: preprocess_images(images, **image_preprocessing(record)).astype(np.float32)}

    def _text_feeds(self, batch: list[Example]) -> dict[str, Any]:
        import numpy as np

        tokenizer = getattr(self.opened.torch_model, "tokenizer", None)
        if tokenizer is None:
            raise errors.UnsupportedError(f"{self.source.model_id} has no tokenizer: zoo cannot turn text into its inputs")
        longest = self.opened.seq_max or getattr(tokenizer, "model_max_length", 512)
        enc = tokenizer([e.text for e in batch], padding=True, truncation=True, max_length=min(int(longest), 4096),
                        return_tensors="np")
        return {n: np.asarray(enc[n], dtype=np.int64) if n in enc else np.zeros_like(enc["input_ids"], dtype=np.int64)
                for n in self.opened.input_names}


def open_image(image: Any) -> Any:
    """A PIL RGB image from a path or a `datasets` Image cell; a UsageError naming a file PIL cannot read."""
    import io

    from PIL import Image, UnidentifiedImageError

    where = image if isinstance(image, Path) else (image or {}).get("path") or "an image in the data set"
    try:
        if isinstance(image, Path):
            with Image.open(image) as img:
                return img.convert("RGB")
        source = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
        with Image.open(source) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise errors.UsageError(f"cannot read {where} as an image: {exc}", hint="remove or replace the file") from exc


def class_indices(data: LabelledData, model_labels: list[str] | None) -> Any:
    """Every example's label as the model's class index.

    Class names are matched against the model's labels (exactly, then ignoring case); integers are
    class indices, unless the data set names its classes (a `datasets` ClassLabel) with names that are
    all the model's, in which case the names are matched. Anything unmatched is a UsageError that lists it."""
    import numpy as np

    names = list(model_labels or [])
    exact = {n: i for i, n in enumerate(names)}
    folded = {n.lower(): i for i, n in reversed(list(enumerate(names)))}
    by_name = bool(data.label_names and names and all(n in exact or n.lower() in folded for n in data.label_names))
    out, unknown = [], set()
    for example in data.examples:
        label = example.label
        if isinstance(label, int) and by_name and 0 <= label < len(data.label_names):
            label = data.label_names[label]
        if isinstance(label, int) or (isinstance(label, str) and label.isdigit() and label not in exact):
            out.append(int(label))
            continue
        index = exact.get(label, folded.get(str(label).lower()))
        if index is None:
            unknown.add(str(label))
        out.append(-1 if index is None else index)
    if unknown:
        shown = ", ".join(sorted(unknown)[:5]) + (" ..." if len(unknown) > 5 else "")
        known = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "") if names else "none (use class indices)"
        raise errors.UsageError(f"{len(unknown)} label(s) of {data.path.name} are not classes of the model: {shown}",
                                hint=f"name classes as the model does ({known}; zoo info NAME lists them) or by class index")
    if any(i < 0 for i in out):
        raise errors.UsageError(f"{data.path.name} has a negative class index")
    return np.asarray(out, dtype=np.int64)


def floor_failure(row: dict[str, Any], max_drop: float | None) -> str | None:
    """Why ``row`` (an artifact's evaluation) breaks the accuracy floor, or None. The floor applies to the
    task's main metric (top-1, accuracy, exact match, WER)."""
    if max_drop is None or row.get("error") or not row.get("delta"):
        return None
    metric = next(m for m in TASK_METRICS[row["task"]] if m in row["delta"])
    worse = drop(metric, row["delta"][metric])
    if worse <= max_drop:
        return None
    return (f"{metric} dropped {worse:.2f} points ({row['source'][metric]:.2%} -> {row['metrics'][metric]:.2%} on "
            f"{row['dataset']['examples']} examples of {Path(row['dataset']['path']).name}), more than the {max_drop:g} allowed")
