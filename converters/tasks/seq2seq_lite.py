"""An encoder-decoder pair (tasks/seq2seq.py) as two static LiteRT files (litert-torch), checked by the same
generation check as every other format.

litert-torch exports static shapes only (no family measured got a dynamic batch through it), and a decoder whose
self-attention cache grows every step has a new shape each step. So the ``.tflite`` pair differs from the ONNX one,
and its contract says how (``io_contract`` in zoo.json's ``conversion``; the conversion itself is
``edges/litert._pair_to_tflite``, with ``examples`` and ``no_cache_decoder`` from here):

- ``encoder.tflite``: batch 1, the text padded to ``ENCODER_LENGTH`` tokens (``attention_mask`` 0 on the padding; a
  longer text is refused), or Whisper's 30 s of log-mel frames as they are; outputs ``last_hidden_state`` and each
  layer's cross-attention keys and values, of which the first (real) positions are the encoder's output.
- ``decoder.tflite``: no self-attention cache: batch 1, the decoder's tokens so far padded to ``DECODER_LENGTH``
  (the prompt and the generated tokens), the encoder mask and cross-attention cache padded to the encoder's length;
  outputs the logits at every position (causal: a position reads only the tokens up to it, so the padding after
  the last real token changes nothing before it) and each layer's self-attention keys and values.

``PairLite`` drives the two files under the contract of the ONNX pair (``encode(feeds)``, ``decode(feeds)`` with
``past_key_values.*`` in and ``present.*`` out) for the generation check and the decoder's elementwise check: it
pads each row, runs it, and cuts the outputs back to the real lengths. A decode step re-runs the whole sequence: the
tokens so far are what it keeps of the previous step (a ``present`` it returned, handed back as the past); a past
it did not return (the random caches of the elementwise input sets) cannot be re-run and is refused, so only the
sets whose past is empty (the real prompts) reach it (``static_sets``: ``self_cache`` ``recomputed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo import errors

ENCODER_LENGTH = 128  # the text encoder's static length (tokens); Whisper's encoder takes its fixed 3000 frames
DECODER_LENGTH = 64  # the decoder's static length: the prompt and the tokens generated so far
FILES = {"encoder": "encoder.tflite", "decoder": "decoder.tflite"}


def no_cache_decoder(pair: Any) -> Any:
    """The pair's decoder without a self-attention cache: (input_ids, [encoder_attention_mask], cross caches) ->
    (logits, present.N.key|value), the past of length 0 made inside."""
    import torch

    contract = pair.contract
    cache = contract["cache"]
    speech = "encoder_attention_mask" not in contract["decoder"]["inputs"]

    class NoCache(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = pair.decoder

        def forward(self, input_ids: Any, *rest: Any) -> tuple:
            mask, cross = (None, rest) if speech else (rest[0], rest[1:])
            batch = input_ids.shape[0]
            empty = torch.zeros(batch, cache["num_heads"], 0, cache["head_dim"], dtype=cross[0].dtype)
            past = []
            for i in range(cache["num_layers"]):
                past += [empty, empty, cross[2 * i], cross[2 * i + 1]]
            return self.decoder(input_ids, *(() if speech else (mask,)), *past)

    return NoCache().eval()


def modules(pair: Any) -> dict[str, Any]:
    """The two modules the static files are made of: the pair's encoder, and its decoder without cache."""
    return {"encoder": pair.encoder, "decoder": no_cache_decoder(pair)}


def decoder_inputs(contract: dict[str, Any]) -> list[str]:
    """The static decoder's inputs: the contract's decoder inputs without the self-attention past."""
    return [n for n in contract["decoder"]["inputs"] if not (n.startswith("past_key_values.") and ".encoder." not in n)]


def examples(pair: Any) -> tuple[tuple, tuple]:
    """Batch-1 examples at the static lengths: a real sample padded (encoder), and the decoder's start token."""
    import torch

    contract = pair.contract
    first = tuple(t[:1] for t in pair.encoder_example)
    if "attention_mask" in contract["encoder"]["inputs"]:
        ids, mask = first
        if ids.shape[1] > ENCODER_LENGTH:
            raise errors.ConversionError(f"the sample is longer than the static encoder length {ENCODER_LENGTH}")
        pad = ENCODER_LENGTH - ids.shape[1]
        first = (torch.nn.functional.pad(ids, (0, pad)), torch.nn.functional.pad(mask, (0, pad)))
    with torch.no_grad():
        hidden, *cross = pair.encoder(*first)
    ids = torch.zeros(1, DECODER_LENGTH, dtype=torch.long)
    context = () if "attention_mask" not in contract["encoder"]["inputs"] else (first[1],)
    return first, (ids, *context, *cross)


def io_contract(contract: dict[str, Any], enc_example: tuple, dec_example: tuple) -> dict[str, Any]:
    """How the ``.tflite`` pair differs from the ONNX pair's contract, said exactly."""
    enc_names, dec_names = contract["encoder"]["inputs"], decoder_inputs(contract)

    def spec(names: list[str], example: tuple) -> list[dict[str, Any]]:
        return [{"name": n, "tflite_name": f"args_{i}", "shape": list(t.shape),
                 "dtype": "int32" if str(t.dtype) == "torch.int64" else str(t.dtype).removeprefix("torch.")}
                for i, (n, t) in enumerate(zip(names, example))]

    return {"shapes": "static, padded", "self_cache": "recomputed", "batch": 1,
            "encoder_sequence": int(dec_example[-1].shape[2]), "decoder_sequence": DECODER_LENGTH,
            "encoder": {"inputs": spec(enc_names, enc_example), "outputs": list(contract["encoder"]["outputs"])},
            "decoder": {"inputs": spec(dec_names, dec_example), "outputs": list(contract["decoder"]["outputs"])},
            "differs": ["batch 1: a batch runs a row at a time",
                        f"the encoder's text padded to {ENCODER_LENGTH} tokens (attention_mask 0 on the padding; a longer "
                        "text is refused); its outputs' first positions are the real ones",
                        f"the decoder has no self-attention cache: each step re-runs the tokens so far (the prompt and the "
                        f"generated tokens, at most {DECODER_LENGTH}), padded to {DECODER_LENGTH}, and reads the logits "
                        "at the last real position; the encoder mask and cross-attention cache padded to the encoder's "
                        "length",
                        "inputs and outputs are named args_N / output_N in the order above; int64 ids and masks take int32"]}


class PairLite:
    """The two static files driven under the ONNX pair's contract (the module docstring says how)."""

    def __init__(self, decoder: Path, contract: dict[str, Any], interpreter: Any) -> None:
        """``interpreter(path)``: a LiteRT interpreter of the file (parity.runners.tflite_interpreter)."""
        self.contract = contract
        encoder = decoder.parent / FILES["encoder"]
        self.enc = interpreter(encoder).get_signature_runner("serving_default") if encoder.is_file() else None
        self.dec = interpreter(decoder).get_signature_runner("serving_default")
        self.dec_names = decoder_inputs(contract)
        self.kinds = {k: d["dtype"] for k, d in self.dec.get_input_details().items()}
        self.shapes = {k: tuple(d["shape"]) for k, d in self.dec.get_input_details().items()}
        self.steps: list[tuple[Any, Any]] = []  # (a present it returned, the tokens it was computed from)

    def encode(self, feeds: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        if self.enc is None:
            raise errors.InvalidModelError("decoder.tflite: no encoder.tflite beside it")
        names, outs = self.contract["encoder"]["inputs"], self.contract["encoder"]["outputs"]
        kinds = {k: d["dtype"] for k, d in self.enc.get_input_details().items()}
        shapes = {k: tuple(d["shape"]) for k, d in self.enc.get_input_details().items()}
        real = feeds[names[0]].shape[1]
        rows = []
        for row in range(feeds[names[0]].shape[0]):
            args = {f"args_{i}": _padded(feeds[n][row:row + 1], shapes[f"args_{i}"], kinds[f"args_{i}"])
                    for i, n in enumerate(names)}
            got = self.enc(**args)
            rows.append([got[f"output_{i}"] for i in range(len(outs))])
        cut = real if "attention_mask" in names else None  # text: the real positions; speech: all of them
        return {n: np.concatenate([_cut(r[i], n, cut) for r in rows]) for i, n in enumerate(outs)}

    def decode(self, feeds: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        past_names = [n for n in self.contract["decoder"]["inputs"] if n.startswith("past_key_values.") and ".encoder." not in n]
        past = feeds[past_names[0]]
        cross = next(n for n in self.dec_names if ".encoder." in n)
        if "encoder_attention_mask" not in self.dec_names and feeds[cross].shape[2] != self.shapes[f"args_{self.dec_names.index(cross)}"][2]:
            raise errors.UsageError("without an encoder mask the static tflite decoder takes a cross-attention cache of "
                                    "the encoder's full length only")
        if past.shape[2] == 0:
            before = np.zeros((feeds["input_ids"].shape[0], 0), np.int64)
        else:
            before = next((tokens for given, tokens in self.steps if given is past), None)
            if before is None:
                raise errors.UnsupportedError("the static tflite decoder re-runs the tokens so far: it takes a past "
                                              "only from its own previous step (present.*), or an empty one")
        tokens = np.concatenate([before, np.asarray(feeds["input_ids"], np.int64)], axis=1)
        if tokens.shape[1] > DECODER_LENGTH:
            raise errors.UsageError(f"the static tflite decoder takes at most {DECODER_LENGTH} tokens")
        outs = self.contract["decoder"]["outputs"]
        rows = []
        for row in range(tokens.shape[0]):
            given = {**feeds, "input_ids": tokens[row:row + 1]}
            args = {f"args_{i}": _padded(np.asarray(given[n][row:row + 1] if n != "input_ids" else given[n]),
                                         self.shapes[f"args_{i}"], self.kinds[f"args_{i}"])
                    for i, n in enumerate(self.dec_names)}
            got = self.dec(**args)
            rows.append([got[f"output_{i}"] for i in range(len(outs))])
        new = slice(before.shape[1], tokens.shape[1])
        result = {"logits": np.concatenate([r[0][:, new] for r in rows])}
        for i, name in enumerate(outs[1:], start=1):
            result[name] = np.concatenate([r[i][:, :, :tokens.shape[1]] for r in rows])
        self.steps.append((result[outs[1]], tokens))  # what a next step handed this present back re-runs
        return result

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """The decoder's outputs in the contract's order (the pipeline's elementwise check)."""
        out = self.decode(feeds)
        return [out[n] for n in self.contract["decoder"]["outputs"]]


def _padded(value: Any, shape: tuple, dtype: Any) -> Any:
    """``value`` zero-padded at the end of every axis to ``shape`` (a longer one refused), in ``dtype``."""
    import numpy as np

    value = np.asarray(value)
    if any(v > s for v, s in zip(value.shape, shape)) or value.ndim != len(shape):
        raise errors.UsageError(f"an input of shape {list(value.shape)} does not fit the static tflite shape {list(shape)}")
    if value.dtype == np.int64 and dtype == np.int32:
        if value.size and (value.min() < -(2**31) or value.max() >= 2**31):
            raise errors.UsageError("an int64 input holds values beyond int32, which the .tflite file takes")
    out = np.zeros(shape, dtype)
    out[tuple(slice(0, v) for v in value.shape)] = value
    return out


def _cut(value: Any, name: str, length: int | None) -> Any:
    """An encoder output cut to the real length: ``last_hidden_state`` on axis 1, the caches on axis 2."""
    if length is None:
        return value
    return value[:, :length] if name == "last_hidden_state" else value[:, :, :length]
