"""Registry records as sources: timm and Hugging Face repos (fetched through huggingface_hub, its cache
and ``HF_*`` variables) and local imports (``zoo import DIR --name N``, stored under ``ZOO_HOME/local``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import errors, hooks
from zoo.registry.records import ModelRecord
from zoo.sources.base import Opened, Source

if TYPE_CHECKING:
    from zoo.progress import Progress
    from zoo.registry.index import Registry
    from zoo.settings import Settings

_TORCH_TOOLS = ("torch", "timm", "transformers")
_KERAS_TOOLS = ("keras", "tensorflow")


def record_node(record: ModelRecord) -> str:
    """The graph node a record's model starts from."""
    return {"keras": "keras-model", "flax": "jax-fn"}.get(record.library, "torch")


class RecordSource(Source):
    def __init__(self, record: ModelRecord, revision: str | None, settings: Settings, registry: Registry) -> None:
        super().__init__()
        self.record, self.requested, self.settings, self.registry = record, revision, settings, registry
        self.kind = "local" if record.source == "local" else "hub"
        self.model_id = record.id
        self.weights: list[str] = []
        self.weights_format = ""

    @property
    def label(self) -> str:
        return self.record.repo_id or self.record.id

    def planned_node(self) -> str | None:
        # a repo seen for the first time is described by its files: only then is its library known
        return record_node(self.record) if self.record.input_spec else None

    # --- fetch and verify ------------------------------------------------------------------------------
    def fetch(self, progress: Progress) -> None:
        if self.record.source == "local":
            self._fetch_local()
        else:
            self._fetch_hub(progress)
        self.node = record_node(self.record)
        self.model_id = self.record.id

    def _fetch_local(self) -> None:
        from zoo.registry.hf_source import choose_files

        record = self.record
        root = self.settings.home / "local" / record.name / str(record.revision)
        files = self.registry.revision_files(record.id, str(record.revision)) or []
        if not root.is_dir() or not files:
            raise errors.ModelNotFoundError(f"the files of {record.id} are missing from {root}",
                                            hint=f"import it again: zoo import DIR --name {record.name}")
        if record.library == "flax":  # flax_config.json + params.msgpack, written by zoo import
            self.weights, self.weights_format = ["params.msgpack"], "msgpack"
        else:
            _names, self.weights, self.weights_format = choose_files([f.path for f in files])
        self.root, self.revision, self.files = root, str(record.revision), files
        if self.task and self.task != record.task and record.library == "transformers":
            from zoo.registry.hf_source import describe

            described = describe(record, root, [f.path for f in files], task=self.task)
            described.revision = record.revision
            self.record = described

    def _fetch_hub(self, progress: Progress) -> None:
        from zoo.registry.hf_source import describe, fetch_snapshot, file_infos

        record = self.record
        if not record.repo_id:
            raise errors.UnsupportedError(
                f"{record.id}: timm publishes these weights only at a URL, not on the Hugging Face hub",
                hint="pick another tag of the architecture (zoo list ARCH)")
        snap = fetch_snapshot(record.repo_id, self.requested, self.settings, repo_filename=record.repo_filename,
                              progress=progress.downloads_visible, on_note=progress.note)
        if record.source == "hf":
            base, declared = record, None
            try:  # the registry keeps what the repo declares; --task changes only this conversion
                declared = describe(base, snap.root, snap.files)
            except errors.UnsupportedError:
                if not self.task:
                    raise
            record = declared
            if self.task and (declared is None or declared.task != self.task):
                record = describe(base, snap.root, snap.files, task=self.task)
            for described in {id(r): r for r in (declared, record) if r is not None}.values():
                described.license = snap.license or described.license
            self.registry.upsert(declared or record)
        files = self.registry.revision_files(record.id, snap.commit)
        self.checked = files is None or {f.path for f in files} != set(snap.files)
        if self.checked:  # first sight of this revision: hash what was not downloaded (and verified) just now
            from zoo.registry.download import verify_files

            unknown = [f for f in snap.files if f not in snap.digests]
            digests = verify_files(snap.root, unknown, {}, self._refetcher(snap.commit, progress), record.id)
            files = file_infos(snap.root, snap.files, known={**snap.digests, **digests})
            self.registry.add_revision(record.id, snap.commit, files)
        hooks.pause_at("fetch.downloaded")
        self.record, self.root, self.revision, self.files = record, snap.root, snap.commit, files
        self.weights, self.weights_format = snap.weights, snap.weights_format

    def _refetcher(self, commit: str, progress: Progress) -> Any:
        """``(name, expected) -> (path, sha256)`` that downloads a corrupt cached file again, or None offline."""
        if self.settings.hf_offline or self.record.source == "local" or not self.record.repo_id:
            return None
        from zoo.registry.download import download_file

        repo_id, settings = self.record.repo_id, self.settings

        def refetch(name: str, expected: Any) -> tuple[Path, str]:
            progress.note(f"{name} of {repo_id} is corrupt in the Hugging Face cache; fetching it again")
            return download_file(repo_id, name, commit, settings, expected)

        return refetch

    def verify(self, progress: Progress) -> None:
        """Every source file must still hash to the digest recorded when it was fetched (bit rot, a
        tampered cache); corrupt files of hub models are fetched again, others are an IntegrityError."""
        if self.checked or not self.files:
            return
        from zoo.registry.download import Expected, verify_files

        expected = {f.path: Expected(sha256=f.sha256, size=f.size) for f in self.files}
        verify_files(self.root, list(expected), expected, self._refetcher(self.revision, progress), self.record.id)

    # --- open ------------------------------------------------------------------------------------------
    def open(self, progress: Progress) -> Opened:
        from zoo.converters.parity.inputs import parity_input_sets

        record = self.record
        with progress.stage("load", f"{record.library} {record.arch}"):
            if self.node == "jax-fn":  # a Flax import: the module --arch named, rebuilt with its checkpoint
                from zoo.converters.loaders.flax_models import flax_function
                from zoo.sources.jax_fn import jax_opened

                return jax_opened(flax_function(self.root, record.arch), self.input_request)
            if self.node == "keras-model":
                from zoo.converters.loaders.keras_models import load_keras_snapshot
                from zoo.converters.parity.runners import keras_runner

                km = load_keras_snapshot(self.root, self.weights)
                return Opened(km, keras_runner(km.model, km.input_names), parity_input_sets(record), km.input_names,
                              km.output_names, km.classifier_outputs, labels=km.labels)
            from zoo.converters.loaders.torch_models import build_model
            from zoo.converters.parity.runners import torch_runner

            tm = build_model(record, self.root, self.weights, self.weights_format, progress.note)
            preprocess = tm.processor if tm.processor is not None else tm.tokenizer
            sets = parity_input_sets(record, preprocess)
            if tm.seq2seq is not None:  # an encoder-decoder: the decoder's first step on the real samples
                from zoo.converters.tasks.seq2seq import sample_set

                sets.append(sample_set(tm.seq2seq))
            if record.task == "text-generation" and tm.tokenizer is not None and record.extra.get("io"):
                from zoo.converters.tasks.text_generation import sample_step_set

                sets.append(sample_step_set(tm.module, tm.tokenizer, sets[0]))  # real prompts at the export's shape
            return Opened(tm, torch_runner(tm), sets, tm.input_names,
                          tm.output_names, tm.classifier_outputs, labels=tm.labels, torch_model=tm,
                          seq_max=record.preprocessing.get("max_length")
                          if tm.tokenizer is not None or getattr(tm.processor, "tokenizer", None) is not None else None)

    def tools(self) -> tuple[str, ...]:
        from zoo.sources.jax_fn import JAX_TOOLS

        return {"keras-model": _KERAS_TOOLS, "jax-fn": JAX_TOOLS}.get(self.node, _TORCH_TOOLS)

    def sidecar_files(self) -> list[str]:
        """Transformers artifacts carry their config and tokenizer files."""
        if self.record.library != "transformers":
            return []
        from zoo.registry.hf_source import METADATA_FILES

        # top-level files only: a sentence-transformers 1_Pooling/config.json is inside the graph already
        return [f.path for f in self.files if f.path in METADATA_FILES and "/" not in f.path]

    def describe(self) -> dict[str, Any]:
        if self.record.source == "local":
            return {"kind": "local", "name": f"local:{self.record.name}", "revision": self.revision}
        return {"kind": "hub", "name": f"{self.record.id}@{self.revision}", "repo_id": self.record.repo_id}

    def memo(self) -> dict[str, Any] | None:
        if self.record.source == "local":  # re-importing makes a new revision (and clears every memo)
            return {"local": self.record.name, "commit": self.revision}
        return {"repo_id": self.record.repo_id, "commit": self.revision} if self.record.repo_id else None
