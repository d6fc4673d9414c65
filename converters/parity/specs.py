"""What the user says about a model's inputs: ``--input`` specifications, ``--inputs FILE.npz`` of real
inputs and ``--samples DIR`` of images, audio and text lines.

``--input NAME:SHAPE[:DTYPE[:LOW..HIGH|V1,V2,...]]`` (repeatable):

- SHAPE: dims joined by ``x`` or ``,`` (``1x3x48x320``, ``batch,3,48,320``); a number fixes the dim, a
  name leaves it to zoo (``batch`` takes zoo's batch sizes; a name shared with another input takes the
  same size); empty or ``scalar`` for a 0-d input (``sr::int64:16000``);
- DTYPE: float32 (default), float16, float64, int64, int32, int16, int8, uint8, bool;
- values: ``LOW..HIGH`` (uniform; integers exclusive of HIGH as numpy draws them) or a list of values
  (``8000,16000``: each input set takes one, in turn).

The parsed form is :class:`InputSpec`; :class:`InputRequest` carries all three options together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from zoo import errors

if TYPE_CHECKING:
    import numpy as np

    from zoo.converters.parity.report import InputSet

DTYPES = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
SPEC_SYNTAX = "NAME:SHAPE[:DTYPE[:LOW..HIGH|V1,V2,...]], e.g. images:1x3x640x640:float32:0..1 or sr::int64:16000"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
AUDIO_SUFFIXES = (".wav",)
TEXT_SUFFIXES = (".txt",)
MAX_SAMPLES = 16  # per kind: a batch larger than this tests nothing more and costs memory


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | str, ...] | None  # None: keep the model's own (only a dtype or values given)
    dtype: str | None = None
    low: float | None = None
    high: float | None = None
    values: tuple[float, ...] = ()

    def describe(self) -> str:
        shape = "scalar" if self.shape == () else "x".join(str(d) for d in self.shape or ()) or "as declared"
        rng = f", values {', '.join(f'{v:g}' for v in self.values)}" if self.values else \
            f", uniform in {self.low:g}..{self.high:g}" if self.low is not None else ""
        return f"given with --input: shape {shape}{', ' + self.dtype if self.dtype else ''}{rng}"


@dataclass(frozen=True)
class InputRequest:
    """Everything the user said about inputs (empty: zoo infers them all)."""

    specs: tuple[InputSpec, ...] = ()
    inputs_file: Path | None = None  # .npz of real inputs
    samples_dir: Path | None = None  # images, audio, text lines

    def __bool__(self) -> bool:
        return bool(self.specs or self.inputs_file or self.samples_dir)

    def spec(self, name: str) -> InputSpec | None:
        return next((s for s in self.specs if s.name == name), None)


def parse_input_spec(text: str) -> InputSpec:
    """One ``--input`` value; a UsageError (exit 2) saying what is wrong with it otherwise."""
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4 or not parts[0].strip():
        raise errors.UsageError(f"--input {text!r} is not NAME:SHAPE[:DTYPE[:RANGE]]", hint=f"write {SPEC_SYNTAX}")
    name, shape_text = parts[0].strip(), parts[1].strip()
    dtype = parts[2].strip().lower() if len(parts) > 2 and parts[2].strip() else None
    if dtype is not None and dtype not in DTYPES:
        raise errors.UsageError(f"--input {name}: dtype {dtype!r} is not one of {', '.join(DTYPES)}", hint=f"write {SPEC_SYNTAX}")
    shape = _parse_shape(name, shape_text)
    low = high = None
    values: tuple[float, ...] = ()
    if len(parts) == 4 and parts[3].strip():
        low, high, values = _parse_values(name, parts[3].strip())
    return InputSpec(name, shape, dtype, low, high, values)


def _parse_shape(name: str, text: str) -> tuple[int | str, ...] | None:
    if text.lower() in ("", "scalar", "[]"):
        return () if text else None
    if text == "*":
        return None
    pieces = text.split(",") if "," in text else text.split("x") if re.fullmatch(r"[0-9x]+", text) else [text]
    dims: list[int | str] = []
    for piece in (p.strip() for p in pieces):
        if re.fullmatch(r"[0-9]+", piece):
            dims.append(int(piece))
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", piece):
            dims.append(piece)
        else:
            raise errors.UsageError(f"--input {name}: dim {piece!r} of shape {text!r} is neither a size nor a name",
                                    hint=f"write {SPEC_SYNTAX}")
    return tuple(dims)


def _parse_values(name: str, text: str) -> tuple[float | None, float | None, tuple[float, ...]]:
    try:
        if ".." in text:
            low_text, high_text = text.split("..", 1)
            low, high = float(low_text), float(high_text)
        else:
            return None, None, tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise errors.UsageError(f"--input {name}: {text!r} is neither LOW..HIGH nor a list of values",
                                hint=f"write {SPEC_SYNTAX}") from exc
    if not high > low:
        raise errors.UsageError(f"--input {name}: range {text!r} needs HIGH > LOW")
    return low, high, ()


def input_request(specs: Sequence[str] = (), inputs: str | None = None, samples: str | None = None) -> InputRequest:
    """The request the options describe, checked: specs parse, each name at most once, the files exist."""
    parsed = tuple(parse_input_spec(s) for s in specs)
    names = [s.name for s in parsed]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise errors.UsageError(f"--input names {', '.join(twice)} more than once", hint="give each input once")
    inputs_file = Path(inputs).expanduser() if inputs else None
    if inputs_file is not None and not inputs_file.is_file():
        raise errors.NotFoundError(f"--inputs {inputs} does not exist", hint="pass a .npz file (numpy.savez) of real inputs")
    samples_dir = Path(samples).expanduser() if samples else None
    if samples_dir is not None and not samples_dir.is_dir():
        raise errors.NotFoundError(f"--samples {samples} is not a directory",
                                   hint="pass a directory of images (.jpg, .png), audio (.wav) or text (.txt) files")
    if inputs_file is not None and samples_dir is not None:
        raise errors.UsageError("--inputs and --samples both give the real inputs", hint="pass one of them")
    return InputRequest(parsed, inputs_file, samples_dir)


# --- --inputs FILE.npz -------------------------------------------------------------------------------
def npz_input_sets(path: Path, spec: list[dict[str, Any]]) -> list[InputSet]:
    """The sets of a ``.npz`` file: keys ``NAME`` (one set) or ``SET/NAME`` (several), every model input in
    each set, dtypes cast only within their kind (int to int, float to float)."""
    import numpy as np

    from zoo.converters.parity.report import InputSet

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, ValueError for pickled objects, ...
        raise errors.UsageError(f"--inputs {path.name} is not a readable .npz of arrays: {type(exc).__name__}: {exc}",
                                hint="write it with numpy.savez(path, name=array, ...); object arrays are refused") from exc
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in arrays.items():
        set_name, _, name = key.rpartition("/")
        grouped.setdefault(set_name or "inputs-file", {})[name] = value
    wanted = {s["name"]: s for s in spec}
    sets = []
    for set_name, feeds in grouped.items():
        missing, extra = sorted(set(wanted) - set(feeds)), sorted(set(feeds) - set(wanted))
        if missing or extra:
            raise errors.UsageError(f"--inputs {path.name} ({set_name}) does not match the model's inputs: "
                                    + "; ".join(x for x in (f"missing {missing}" if missing else "",
                                                            f"unknown {extra}" if extra else "") if x),
                                    hint=f"the model takes {', '.join(wanted)}")
        ordered = {name: _cast(path, name, feeds[name], wanted[name]["dtype"]) for name in wanted}
        sets.append(InputSet(set_name, ordered, kind="sample"))
    return sets


def _cast(path: Path, name: str, value: np.ndarray, dtype: str) -> np.ndarray:
    import numpy as np

    target = np.dtype("bool" if dtype == "bool" else dtype)
    if value.dtype == target:
        return value
    if value.dtype.kind == target.kind or {value.dtype.kind, target.kind} <= set("iu"):
        return value.astype(target)
    raise errors.UsageError(f"--inputs {path.name}: {name} is {value.dtype} but the model takes {dtype}",
                            hint=f"save {name} as {dtype}")


# --- --samples DIR -----------------------------------------------------------------------------------
def sample_files(directory: Path) -> dict[str, list[Path]]:
    """Images, audio files and text files of ``directory`` (sorted, at most ``MAX_SAMPLES`` each)."""
    found: dict[str, list[Path]] = {"image": [], "audio": [], "text": []}
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.is_symlink()):
        suffix = path.suffix.lower()
        kind = "image" if suffix in IMAGE_SUFFIXES else "audio" if suffix in AUDIO_SUFFIXES else \
            "text" if suffix in TEXT_SUFFIXES else None
        if kind and len(found[kind]) < MAX_SAMPLES:
            found[kind].append(path)
    if not any(found.values()):
        raise errors.UsageError(f"--samples {directory} holds no images, .wav or .txt files",
                                hint="put images (.jpg, .png), audio (.wav) or text lines (.txt) in it")
    return found


def read_images(paths: list[Path]) -> list[tuple[str, Any]]:
    from PIL import Image

    out = []
    for path in paths:
        try:
            with Image.open(path) as img:
                out.append((path.name, img.convert("RGB")))
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds on a bad file
            raise errors.UsageError(f"--samples: {path.name} is not an image PIL can read: {exc}") from exc
    return out


def read_wav(path: Path, rate: int) -> np.ndarray:
    """A PCM ``.wav`` file as mono float32 in [-1, 1], resampled (linearly) to ``rate``."""
    import wave

    import numpy as np

    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, source_rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise errors.UsageError(f"--samples: {path.name} is not a PCM .wav file: {exc}",
                                hint="convert it to 16-bit PCM WAV") from exc
    kinds = {1: (np.uint8, 128.0, 128.0), 2: (np.int16, 0.0, 32768.0), 4: (np.int32, 0.0, 2147483648.0)}
    if width not in kinds:
        raise errors.UsageError(f"--samples: {path.name} has {8 * width}-bit samples", hint="convert it to 16-bit PCM WAV")
    kind, offset, scale = kinds[width]
    data = (np.frombuffer(frames, dtype=kind).astype(np.float64) - offset) / scale
    data = data.reshape(-1, channels).mean(axis=1)
    if source_rate != rate and len(data) > 1:
        count = int(round(len(data) * rate / source_rate))
        data = np.interp(np.linspace(0, len(data) - 1, count), np.arange(len(data)), data)
    return data.astype(np.float32)


def read_lines(paths: list[Path]) -> list[str]:
    lines = []
    for path in paths:
        lines.extend(line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
    return lines[:MAX_SAMPLES]


def fit_length(arrays: list[np.ndarray], length: int | None) -> np.ndarray:
    """1-d arrays cut or zero-padded to ``length`` (None: the longest), stacked."""
    import numpy as np

    size = length or max(len(a) for a in arrays)
    out = np.zeros((len(arrays), size), dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, :min(size, len(a))] = a[:size]
    return out
