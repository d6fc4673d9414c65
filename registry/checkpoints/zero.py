"""DeepSpeed ZeRO stage 1, 2 and 3 checkpoint directories, consolidated to full fp32 weights as
DeepSpeed's ``zero_to_fp32`` does, without deepspeed and without running its pickles.

Layout (what ``engine.save_checkpoint(DIR)`` writes)::

    DIR/latest                                   the tag of the newest checkpoint, e.g. "global_step3"
    DIR/global_step3/mp_rank_00_model_states.pt  stage 1/2: module state (buffers), param_shapes, ...
    DIR/global_step3/zero_pp_rank_R_mp_rank_00_model_states.pt      stage 3: one per rank
    DIR/global_step3/[bf16_]zero_pp_rank_R_mp_rank_00_optim_states.pt  one per rank: the fp32 master
        partitions (stage 1/2 ``single_partition_of_fp32_groups``, stage 3 ``fp32_flat_groups``)

Stage 1/2: each param group's flat fp32 vector is the ranks' partitions concatenated; parameters lie
in it back to back, in ``param_shapes`` order, padded at the end to a multiple of 2 * world size.
Stage 3: every parameter is split on its own into world-size parts of ceil(numel / world size)
elements (the last one padded); rank R's flat vector holds part R of each parameter in order.

The pickles name a few DeepSpeed classes (the ZeRO stage enum, the loss scaler, fragment addresses);
the opcode walk allows exactly those, and ``torch.load(weights_only=True)`` builds them as inert
stand-ins (``common.Stub``). The shards are memory-mapped; the output's header is built from
``param_shapes`` first, then each parameter goes to ``stream.write`` as the views of the ranks' parts
that hold it (``stream.Parts``, never copied into an assembled tensor), checked (shape, dtype), written,
hashed and read back, its mapped pages handed back: peak memory stays near two tensors, not the model.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import errors
from zoo.registry.checkpoints.common import Checkpoint, Stub, safe_torch_load, stub
from zoo.registry.checkpoints.stream import Parts, meta_tensor, release

if TYPE_CHECKING:
    from zoo.settings import Settings

# The DeepSpeed classes its checkpoints pickle, read as inert stand-ins (never imported, never run).
_DS_CLASSES = (
    ("deepspeed.runtime.zero.config", "ZeroStageEnum"),
    ("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
    ("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler"),
    ("deepspeed.utils.tensor_fragment", "fragment_address"),
    ("deepspeed.checkpoint.constants", "ZeroStageEnum"),
)
ALLOW: dict[tuple[str, str], Any] = {name: stub(*name) for name in _DS_CLASSES}
ALLOW[("builtins", "set")] = set  # sparse_tensor_module_names
_TAG = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_RANK = re.compile(r"zero_pp_rank_(\d+)_mp_rank_(\d+)_(model|optim)_states\.pt$")


def read(path: Path, settings: Settings) -> Checkpoint:
    import torch

    step_dir = _step_dir(path)
    model_files = sorted(step_dir.glob("*_model_states.pt"), key=_rank_of)
    optim_files = sorted(step_dir.glob("*_optim_states.pt"), key=_rank_of)
    if not model_files or not optim_files:
        raise errors.InvalidModelError(f"{step_dir.name} holds no *_model_states.pt / *_optim_states.pt",
                                       hint="point zoo at the directory engine.save_checkpoint wrote")
    for f in model_files + optim_files:
        if f.is_symlink() or not f.is_file():
            raise errors.UnsafeModelError(f"refusing {f.name}: not a plain file", hint="copy the real files")
    if any(_RANK.search(f.name) and _RANK.search(f.name).group(2) != "00" for f in model_files + optim_files):
        raise errors.UnsupportedError(f"{step_dir.name} is model-parallel (mp_rank > 0)",
                                      hint="zoo consolidates data-parallel ZeRO checkpoints (mp_rank_00 only)")
    model0 = safe_torch_load(model_files[0], f"{step_dir.name}/{model_files[0].name}", allow=ALLOW)
    if not isinstance(model0, dict) or "param_shapes" not in model0 or "buffer_names" not in model0:
        raise errors.InvalidModelError(f"{model_files[0].name} is not a DeepSpeed model states file",
                                       hint="point zoo at the directory engine.save_checkpoint wrote")
    world = len(optim_files)
    shapes = _param_shapes(model0)
    buffers: dict[str, Any] = {}
    module = model0.get("module") or {}
    buffer_names = set(model0.get("buffer_names") or [])
    for name in module:
        if name in buffer_names:
            buffers[name] = module[name].detach().float().clone()
    frozen = {k: tuple(v) for k, v in (model0.get("frozen_param_shapes") or {}).items()}
    stage = None
    ranks: list[list[Any]] = []
    for f in optim_files:  # memory-mapped: only the pages of the parameter being assembled become resident
        osd = safe_torch_load(f, f"{step_dir.name}/{f.name}", allow=ALLOW)
        try:
            opt = osd["optimizer_state_dict"]
            s = _as_int(opt["zero_stage"])
            counts = opt.get("partition_count")
        except (KeyError, TypeError):
            raise errors.InvalidModelError(f"{f.name} is not a ZeRO optimizer states file (no zero_stage)",
                                           hint="point zoo at the directory engine.save_checkpoint wrote") from None
        stage = s if stage is None else stage
        if s != stage:
            raise errors.InvalidModelError(f"{f.name} says ZeRO stage {s}, rank 0 says {stage}", hint=_MIXED)
        count = max(counts) if isinstance(counts, list) else _as_int(counts) if counts is not None else world
        if count != world:
            raise errors.InvalidModelError(f"{f.name} was written by {count} ranks but {world} optim_states files are here",
                                           hint=_MIXED)
        groups = opt.get("fp32_flat_groups" if stage == 3 else "single_partition_of_fp32_groups")
        if not isinstance(groups, list) or not all(isinstance(g, torch.Tensor) and g.dim() == 1 for g in groups):
            raise errors.InvalidModelError(f"{f.name} holds no flat fp32 groups", hint=_MIXED)
        ranks.append([g.detach() for g in groups])
        del osd, opt
    if stage not in (1, 2, 3):
        raise errors.UnsupportedError(f"ZeRO stage {stage} is not one zoo consolidates", hint="stages 1, 2 and 3")
    where = f"{path.name}/{step_dir.name}"
    # The header first: every name, shape and dtype, in the order the stream yields them.
    declared: dict[str, Any] = {name: meta_tensor(tuple(t.shape), torch.float32) for name, t in buffers.items()}
    for g in shapes:
        declared.update({name: meta_tensor(shape, torch.float32) for name, shape in g.items()})
    declared.update({name: meta_tensor(shape, torch.float32) for name, shape in frozen.items()})
    shared = {name: target for name, target in (model0.get("shared_params") or {}).items()
              if isinstance(name, str) and target in declared and name not in declared}
    declared.update({name: declared[target] for name, target in shared.items()})
    if stage == 3:
        plan = _plan_zero3(shapes, ranks, world, where)
        params = _stream_zero3(plan, ranks, world)
    else:
        _check_zero2(shapes, ranks, world, where)
        params = _stream_zero2(shapes, ranks)

    def items() -> Iterator[tuple[str, Any]]:
        kept: dict[str, Any] = {}
        keep = set(shared.values())
        for name, t in itertools.chain(buffers.items(), params, _frozen(stage, frozen, model0, model_files)):
            if name in keep:
                kept[name] = t.materialize() if isinstance(t, Parts) else t.clone()
            yield name, t
        for name, target in shared.items():
            yield name, kept[target]

    info = {"zero_stage": stage, "ranks": world, "tag": step_dir.name, "ds_version": str(model0.get("ds_version", "")),
            "consolidated": {"tensors": len(declared), "dtype": "float32", "streamed": True,
                             "checked": "shape, dtype, sha256 per tensor"}}
    for key in ("global_steps", "global_samples"):
        if isinstance(model0.get(key), int):
            info[key] = model0[key]
    return Checkpoint(declared, f"deepspeed-zero{stage}", path.name, info, stream=items)


def _frozen(stage: int, frozen: dict[str, tuple[int, ...]], model0: dict[str, Any], model_files: list[Path]
            ) -> Iterator[tuple[str, Any]]:
    import torch

    if not frozen:
        return
    if stage == 3:
        models = [safe_torch_load(m, m.name, allow=ALLOW) for m in model_files]
        for name, shape in frozen.items():
            parts = [m["frozen_param_fragments"][name].reshape(-1) for m in models]
            yield name, torch.cat(parts).narrow(0, 0, math.prod(shape)).view(shape).float().clone()
    else:
        for name in frozen:
            yield name, model0["frozen_param_fragments"][name].detach().float().clone()


_MIXED = "the directory mixes shards of different runs or a rank's file is missing: save the checkpoint again"


def _step_dir(path: Path) -> Path:
    if any(path.glob("*_model_states.pt")):
        return path
    latest = path / "latest"
    if latest.is_file():
        tag = latest.read_text(encoding="utf-8", errors="replace").strip()
        if not _TAG.match(tag) or tag in (".", ".."):
            raise errors.UnsafeModelError(f"{path.name}/latest names {tag[:80]!r}, not a checkpoint tag inside the directory",
                                          hint="latest holds a tag such as global_step100")
    else:
        tags = sorted((p.name for p in path.glob("global_step*") if p.is_dir()), key=lambda t: int(re.sub(r"\D", "", t) or 0))
        if not tags:
            raise errors.InvalidModelError(f"{path} has neither latest nor global_stepN/", hint="point zoo at DIR of save_checkpoint(DIR)")
        tag = tags[-1]
    step = path / tag
    if step.is_symlink() or not step.is_dir():
        raise errors.InvalidModelError(f"{path.name}/latest names {tag!r}, which is not a directory here",
                                       hint="the checkpoint is incomplete: copy the whole directory")
    return step


def _rank_of(path: Path) -> tuple[int, str]:
    m = _RANK.search(path.name)
    return (int(m.group(1)) if m else -1, path.name)


def _as_int(value: Any) -> int:
    if isinstance(value, Stub):  # the ZeroStageEnum stand-in: built from its value
        args = getattr(value, "_args", ())
        value = args[0] if args else getattr(value, "_state", None)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidModelError(f"expected a number in the ZeRO checkpoint, found {type(value).__name__}",
                                       hint=_MIXED)
    return value


def _param_shapes(model0: dict[str, Any]) -> list[dict[str, tuple[int, ...]]]:
    groups = model0.get("param_shapes")
    if isinstance(groups, dict):
        groups = [groups]
    if not isinstance(groups, list):
        raise errors.InvalidModelError("param_shapes is not a list of name -> shape maps", hint=_MIXED)
    out = []
    for g in groups:
        if not isinstance(g, dict):
            raise errors.InvalidModelError("param_shapes is not a list of name -> shape maps", hint=_MIXED)
        shapes = {}
        for name, shape in g.items():
            dims = tuple(shape)
            if not isinstance(name, str) or not all(isinstance(d, int) and d >= 0 for d in dims):
                raise errors.InvalidModelError(f"param_shapes has an invalid entry {name!r}: {shape!r}", hint=_MIXED)
            shapes[name] = dims
        out.append(shapes)
    return out


def _check_zero2(shapes: list[dict[str, tuple[int, ...]]], ranks: list[list[Any]], world: int, where: str) -> None:
    """Stage 1/2: group i's full vector is the ranks' group-i partitions back to back."""
    if any(len(r) != len(shapes) for r in ranks):
        raise errors.InvalidModelError(f"{where}: the ranks hold {sorted({len(r) for r in ranks})} param groups, "
                                       f"param_shapes {len(shapes)}", hint=_MIXED)
    align = 2 * world
    for i, group in enumerate(shapes):
        need = sum(math.prod(s) for s in group.values())
        have = sum(r[i].numel() for r in ranks)  # equal but for padding: DeepSpeed concatenates them as they are
        if align * math.ceil(need / align) != align * math.ceil(have / align) or need > have:
            raise errors.InvalidModelError(f"{where}: group {i}'s shapes need {need} values, the shards hold {have}",
                                           hint=_MIXED)


def _stream_zero2(shapes: list[dict[str, tuple[int, ...]]], ranks: list[list[Any]]) -> Iterator[tuple[str, Any]]:
    for i, group in enumerate(shapes):
        parts = [r[i] for r in ranks]
        sizes = [p.numel() for p in parts]
        offset = 0
        for name, shape in group.items():
            n = math.prod(shape)
            yield name, _parts(shape, _pieces(parts, sizes, offset, n))
            offset += n


def _pieces(tensors: list[Any], sizes: list[int], offset: int, n: int) -> list[tuple[Any, int, int]]:
    """``n`` values starting at ``offset`` of the virtual concatenation of ``tensors`` (never built): the
    (tensor, start, count) ranges that hold them, in order."""
    starts = [sum(sizes[:r]) for r in range(len(sizes))]
    out = []
    done = 0
    while done < n:
        at = offset + done
        rank = max(r for r, start in enumerate(starts) if start <= at and sizes[r] > 0)
        inside = at - starts[rank]
        take = min(n - done, sizes[rank] - inside)
        if take <= 0:
            raise errors.InvalidModelError(f"param_shapes ask for values {offset}..{offset + n} past the shards' "
                                           f"{sum(sizes)}", hint=_MIXED)
        out.append((tensors[rank], inside, take))
        done += take
    return out


def _parts(shape: tuple[int, ...], ranges: list[tuple[Any, int, int]]) -> Parts:
    """A parameter as views of the mapped shards, written from there without an assembled copy; their pages
    are handed back once written (``stream.release``)."""
    import torch

    def after() -> None:
        for t, start, count in ranges:
            release(t, start, count)

    return Parts(shape, torch.float32, [t.narrow(0, start, count) for t, start, count in ranges if count], after)


def _plan_zero3(shapes: list[dict[str, tuple[int, ...]]], ranks: list[list[Any]], world: int, where: str
                ) -> list[tuple[str, tuple[int, ...], int, int]]:
    """Stage 3: each parameter is split on its own; rank R holds its part R at the same flat offset.
    Every offset is worked out (and checked against the shards' sizes) before a byte is written."""
    sizes = [sum(g.numel() for g in r) for r in ranks]
    if len(set(sizes)) != 1:
        raise errors.InvalidModelError(f"{where}: the ranks' flat fp32 vectors differ in size ({sizes})", hint=_MIXED)
    plan = []
    offset = 0
    for name, shape in ((k, v) for g in shapes for k, v in g.items()):
        part = math.ceil(math.prod(shape) / world)
        if offset + part > sizes[0]:
            raise errors.InvalidModelError(f"{where}: {name} {list(shape)} runs past the shards' {sizes[0]} values per rank",
                                           hint=_MIXED)
        plan.append((name, shape, offset, part))
        offset += part
    if offset != sizes[0]:
        raise errors.InvalidModelError(f"{where}: param_shapes account for {offset} values per rank, the shards hold "
                                       f"{sizes[0]}", hint=_MIXED)
    return plan


def _stream_zero3(plan: list[tuple[str, tuple[int, ...], int, int]], ranks: list[list[Any]], world: int
                  ) -> Iterator[tuple[str, Any]]:
    """Rank R's part of a parameter follows rank R-1's; the last part's padding is left out."""
    sizes = [[g.numel() for g in r] for r in ranks]
    for name, shape, offset, part in plan:
        left = math.prod(shape)
        ranges = []
        for r, groups in enumerate(ranks):
            take = min(part, left)
            if take > 0:
                ranges += _pieces(groups, sizes[r], offset, take)
            left -= take
        yield name, _parts(shape, ranges)
