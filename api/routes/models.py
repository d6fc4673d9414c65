"""The catalog: search the index, and everything known about one model."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from zoo.api.deps import ReadAccess, ServiceDep
from zoo.api.schemas import ErrorPublic, ModelPublic, ModelsPublic, ModelSummary

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelsPublic)
def list_models(service: ServiceDep, _: ReadAccess,
                q: Annotated[str | None, Query(max_length=200, description="substring, or a glob with *")] = None,
                source: Literal["timm", "hf", "local", "keras"] | None = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50,
                offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> ModelsPublic:
    """Models in the index (timm's catalog, fetched Hugging Face repos, Keras applications, imports)."""
    records, total = service.models(q, source, limit, offset)
    data = [ModelSummary(id=r.id, source=r.source, name=r.name, library=r.library, task=r.task,
                         is_default=r.is_default) for r in records]
    return ModelsPublic(data=data, count=total, limit=limit, offset=offset)


@router.get("/{model_id:path}", response_model=ModelPublic,
            responses={404: {"model": ErrorPublic}, 422: {"model": ErrorPublic}})
def get_model(service: ServiceDep, _: ReadAccess,
              model_id: Annotated[str, Path(max_length=300, description="timm/resnet50.a1_in1k, org/name, ...")]
              ) -> ModelPublic:
    """The record, revisions with file digests, formats already converted and their parity reports."""
    return ModelPublic.from_info(service.model(model_id))
