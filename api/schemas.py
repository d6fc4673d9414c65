"""Request and response bodies of the HTTP API, one family per resource
(``JobCreate`` in, ``JobPublic`` / ``JobsPublic`` out). Requests refuse unknown
fields; responses never carry server paths."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from zoo.options import option_fields
from zoo.service.jobs import Job, JobRequest

JobState = Literal["queued", "running", "succeeded", "failed", "canceled"]


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


class ErrorPublic(BaseModel):
    """Every error the API answers with, and a failed job's error."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="machine-readable code, e.g. model_not_found")
    message: str = Field(description="what happened")
    hint: str | None = Field(None, description="what to do next")
    status: int | None = Field(None, description="the HTTP status this error maps to")


# --- jobs ----------------------------------------------------------------------
def _job_options() -> type[BaseModel]:
    """The request schema of a job's options, made from ``zoo.options.Options``: the same names, defaults,
    bounds and choices as the command line's flags (the format is the job's own field)."""
    from pydantic import StringConstraints, create_model

    spec = Annotated[str, StringConstraints(min_length=1, max_length=200)]
    types = {"int | None": int | None, "float | None": float | None, "bool": bool, "str": str,
             "str | None": str | None, "tuple[str, ...]": list[spec]}  # type: ignore[valid-type]
    fields: dict[str, Any] = {}
    for f in option_fields(exclude=("format",)):
        meta = f.metadata
        if not meta["api"]:  # a path on the client's machine: the server cannot read it
            continue
        kind = Literal[meta["choices"]] if meta["choices"] else types[f.type]  # type: ignore[valid-type]
        extra = {"allow_inf_nan": False} if "float" in f.type else {"max_length": 32} if "tuple" in f.type else {}
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        fields[f.name] = (kind, Field(default, ge=meta["ge"], le=meta["le"], description=meta["help"], **extra))
    return create_model("JobOptions", __config__=ConfigDict(extra="forbid"), **fields)


JobOptions = _job_options()


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=300, examples=["resnet50"],
                       description="resnet50, resnet50.a1_in1k, org/name[@rev], local:NAME, keras:MobileNetV2[@SIZE]")
    revision: str | None = Field(None, min_length=1, max_length=200, description="branch, tag or commit (repos)")
    format: str = Field("onnx", min_length=1, max_length=32, examples=["onnx", "onnx-fp16", "pt2"])
    options: JobOptions = Field(default_factory=JobOptions)

    def to_request(self) -> JobRequest:
        return JobRequest(model=self.model, format=self.format, revision=self.revision,
                          options=self.options.model_dump(exclude_none=True))


class ArtifactRef(BaseModel):
    sha256: str
    size: int
    url: str


class JobResult(BaseModel):
    model: str
    revision: str
    format: str
    sha256: str = Field(description="of the primary file")
    size: int
    digest: str = Field(description="the artifact directory's digest in the store")
    verified: bool
    cached: bool
    parity: dict[str, Any]
    conversion: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    artifact: ArtifactRef = Field(description="the primary file")
    archive: ArtifactRef | None = Field(None, description="every file of a directory artifact, as one tar")

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> "JobResult":
        archive = result.get("archive")
        return cls(**{k: v for k, v in result.items() if k in cls.model_fields and k not in ("artifact", "archive")},
                   artifact=ArtifactRef(sha256=result["sha256"], size=result["size"],
                                        url=f"/v1/artifacts/{result['sha256']}"),
                   archive=ArtifactRef(sha256=archive["sha256"], size=archive["size"],
                                       url=f"/v1/artifacts/{archive['sha256']}") if archive else None)


class JobPublic(BaseModel):
    id: str
    model: str = Field(description="as requested, with @revision when one was given")
    format: str
    options: dict[str, Any]
    state: JobState
    stage: str | None
    progress: float = Field(ge=0, le=1)
    attempts: int
    max_attempts: int
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: ErrorPublic | None
    result: JobResult | None
    links: dict[str, str]

    @classmethod
    def from_job(cls, job: Job) -> "JobPublic":
        base = f"/v1/jobs/{job.id}"
        return cls(id=job.id, model=job.model, format=job.format, options=job.options, state=job.state,
                   stage=job.stage, progress=job.progress, attempts=job.attempts, max_attempts=job.max_attempts,
                   cancel_requested=job.cancel_requested, created_at=_time(job.created_at),
                   updated_at=_time(job.updated_at), started_at=_time(job.started_at),
                   finished_at=_time(job.finished_at), error=ErrorPublic(**job.error) if job.error else None,
                   result=JobResult.from_result(job.result) if job.result else None,
                   links={"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel"})


class Page(BaseModel):
    count: int = Field(description="items matching, over all pages")
    limit: int
    offset: int


class JobsPublic(Page):
    data: list[JobPublic]


# --- models --------------------------------------------------------------------
class ModelSummary(BaseModel):
    id: str
    source: str
    name: str
    library: str | None = None
    task: str | None = None
    is_default: bool = False


class ModelsPublic(Page):
    data: list[ModelSummary]


class FilePublic(BaseModel):
    path: str
    sha256: str
    size: int


class RevisionPublic(BaseModel):
    revision: str
    files: list[FilePublic]


class ModelArtifact(BaseModel):
    digest: str
    format: str
    revision: str
    verified: bool
    sha256: str
    size: int
    url: str
    archive_url: str | None = None
    parity: dict[str, Any]
    conversion: dict[str, Any]
    evaluations: list[dict[str, Any]] = Field(default_factory=list,
                                              description="accuracy on labelled data sets (zoo eval), newest first")


class ModelPublic(ModelSummary):
    repo_id: str | None = None
    arch: str | None = None
    tag: str | None = None
    license: str | None = None
    num_classes: int | None = None
    labels: list[str] | None = None
    input_spec: list[dict[str, Any]] = Field(default_factory=list)
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    revisions: list[RevisionPublic]
    formats: list[str] = Field(description="formats with a verified artifact")
    artifacts: list[ModelArtifact]

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> "ModelPublic":
        artifacts = [ModelArtifact(**a, url=f"/v1/artifacts/{a['sha256']}",
                                   archive_url=f"/v1/artifacts/{a['archive_sha256']}" if a.get("archive_sha256") else None)
                     for a in info["artifacts"]]
        fields = {k: v for k, v in info.items() if k in cls.model_fields and k != "artifacts"}
        return cls(**fields, artifacts=artifacts)


# --- tokens, health ------------------------------------------------------------
class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Literal["read", "write", "admin"]
    name: str | None = Field(None, max_length=200)


class TokenPublic(BaseModel):
    id: str
    scope: str
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_info(cls, info: Any) -> "TokenPublic":
        return cls(id=info.id, scope=info.scope, name=info.name, created_at=_time(info.created_at),
                   last_used_at=_time(info.last_used_at), revoked_at=_time(info.revoked_at))


class TokenCreated(TokenPublic):
    token: str = Field(description="the secret: shown once, stored only as a hash")


class TokensPublic(BaseModel):
    data: list[TokenPublic]
    count: int


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Any]
