"""A JAX function with its parameters, from Python: the source of ``zoo.convert_jax(fn, params, example)``.

Its identity is its content: the digest of its jaxpr (the computation), the bytes of its parameters and of
the constants it closes over, and its input spec (``zoo.converters.loaders.flax_models.function_digest``),
so the same function on the same weights is answered from the cache in any process. The reference is
``jax.jit(fn)(params, *inputs)``; parity runs on the user's example (as a real sample) and on seeded
random batches made from the input spec (the first axis dynamic unless ``dynamic_batch=False``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.sources.base import Opened, Source

if TYPE_CHECKING:
    from zoo.converters.loaders.flax_models import JaxFunction
    from zoo.progress import Progress

JAX_TOOLS = ("jax", "jaxlib", "flax")


def jax_opened(jf: JaxFunction, request: Any, example: list[Any] | None = None) -> Opened:
    """The parts every JAX source opens into: the function, its ``jax.jit`` runner, input sets made from
    its spec (and the user's example arrays as one real set)."""
    import numpy as np

    from zoo.converters.loaders.flax_models import jit_runner
    from zoo.converters.parity.report import InputSet
    from zoo.converters.parity.sampling import signature_input_sets

    reference = jit_runner(jf)
    sets, notes = signature_input_sets(jf.input_spec, {}, reference=reference, request=request)
    if example is not None and not (request and request.inputs_file):
        sets.append(InputSet("example", {n: np.asarray(a) for n, a in zip(jf.input_names, example)}, kind="sample"))
        notes = {n: f"{text}; and the example given" for n, text in notes.items()}
    outputs = jf.output_names or [f"output_{i}" for i in range(len(reference(sets[0].feeds)))]
    jf.output_names = outputs
    return Opened(jf, reference, sets, jf.input_names, outputs, input_notes=notes, inputs_requested=True)


class JaxFunctionSource(Source):
    kind = "jax"
    node = "jax-fn"

    def __init__(self, jf: JaxFunction, example: list[Any], name: str | None = None) -> None:
        super().__init__()
        self.jf, self.example, self.name = jf, example, name

    @property
    def label(self) -> str:
        return self.name or self.jf.label

    def planned_node(self) -> str | None:
        return self.node

    def fetch(self, progress: Progress) -> None:
        from zoo.converters.loaders.flax_models import function_digest

        with progress.stage("hash", "the function's jaxpr and parameters"):
            digest = function_digest(self.jf)
        self.revision = digest
        self.model_id = f"jax/{self.name or digest[:16]}"
        self.checked = True

    def open(self, progress: Progress) -> Opened:
        return jax_opened(self.jf, self.input_request, self.example)

    def tools(self) -> tuple[str, ...]:
        return JAX_TOOLS

    def onnx_metadata(self) -> dict[str, str]:
        return {"zoo.source": self.model_id, "zoo.source_revision": self.revision,
                "zoo.converted_from": f"jax function {self.label} sha256:{self.revision}"}

    def describe(self) -> dict[str, Any]:
        # an in-memory function cannot be replayed from the manifest: only its identity is recorded
        return {"kind": self.kind, "name": self.label, "sha256": self.revision, "input_spec": self.jf.input_spec}
