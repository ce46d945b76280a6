"""Adapter-only checkpoints: adapter.safetensors, optimizer.pt and trainer_state.json, each written atomically."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from align_data.errors import AlignDataError
from align_data.trainer.adapters import SpeechAdapter, adapter_from_metadata

ADAPTER_FILE = "adapter.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
LOG_FILE = "train_log.jsonl"


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp)``, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """torch's CPU (and CUDA) generator states, base64 so they fit in JSON."""
    state = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved (CUDA states only when CUDA is present)."""
    def decode(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(decode(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([decode(s) for s in state["cuda"]])


def save_checkpoint(out_dir: Path, adapter: SpeechAdapter, optimizer: torch.optim.Optimizer, step: int,
                    state: dict[str, Any]) -> None:
    """Write the adapter, then the optimizer, then trainer_state.json (the marker that the checkpoint is whole)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in adapter.state_dict().items()}
    metadata = {**adapter.shape_metadata(), "step": str(step), "format": "align_data.adapter.v1"}
    data = _canonical_safetensors(save(tensors, metadata=metadata))
    _atomic(out_dir / ADAPTER_FILE, lambda tmp: tmp.write_bytes(data))
    _atomic(out_dir / OPTIMIZER_FILE, lambda tmp: torch.save({"step": step, "optimizer": optimizer.state_dict()}, tmp))
    text = json.dumps({**state, "step": step, "rng": rng_state()}, indent=1, sort_keys=True)
    _atomic(out_dir / STATE_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _canonical_safetensors(data: bytes) -> bytes:
    """safetensors bytes with the JSON header's keys sorted. The library writes the metadata in hash-map order,
    which changes from call to call, so the same adapter saved twice differed in its first bytes."""
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + size]), sort_keys=True, separators=(",", ":")).encode()
    if len(header) > size:  # not the compact JSON the library writes: keep its bytes
        return data
    return data[:8] + header.ljust(size) + data[8 + size:]  # the format pads its header with spaces


def load_adapter(path: Path, device: str | torch.device = "cpu") -> SpeechAdapter:
    """The adapter (conv or Q-Former, as its metadata says) rebuilt from ``adapter.safetensors`` (or a checkpoint
    folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / ADAPTER_FILE
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (FileNotFoundError, SafetensorError) as exc:
        raise AlignDataError(f"{path}: not a readable adapter checkpoint ({exc}); "
                             "pass a `train` output folder") from exc
    if meta.get("format") != "align_data.adapter.v1":
        raise AlignDataError(f"{path}: not an align-data adapter (metadata format {meta.get('format')!r})")
    adapter = adapter_from_metadata(meta)
    adapter.load_state_dict(tensors, strict=True)
    return adapter.to(device)


def adapter_step(path: Path) -> int:
    """The step an adapter.safetensors was saved at."""
    with safe_open(str(path), framework="pt") as fh:
        return int((fh.metadata() or {})["step"])


def load_checkpoint(out_dir: Path, device: torch.device) -> tuple[dict[str, Any], SpeechAdapter, dict[str, Any]]:
    """trainer_state, adapter and optimizer state of ``out_dir``, refusing a checkpoint whose files disagree."""
    state_path = out_dir / STATE_FILE
    if not state_path.is_file():
        raise AlignDataError(f"{out_dir} has no checkpoint to resume ({STATE_FILE} missing); drop --resume")
    state = json.loads(state_path.read_text(encoding="utf-8"))
    adapter = load_adapter(out_dir / ADAPTER_FILE, device)
    try:
        saved = torch.load(out_dir / OPTIMIZER_FILE, map_location=device, weights_only=True)
    except FileNotFoundError as exc:
        raise AlignDataError(f"{out_dir}: {OPTIMIZER_FILE} is missing; the checkpoint cannot be resumed") from exc
    steps = {STATE_FILE: state["step"], ADAPTER_FILE: adapter_step(out_dir / ADAPTER_FILE),
             OPTIMIZER_FILE: saved["step"]}
    if len(set(steps.values())) != 1:
        raise AlignDataError(f"{out_dir}: checkpoint files are from different steps {steps} (interrupted while "
                             "saving); start again in a new --out folder")
    return state, adapter, saved["optimizer"]


def truncate_log(path: Path, step: int) -> None:
    """Drop train_log.jsonl lines after ``step`` (written after the checkpoint a resume starts from)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and json.loads(line)["step"] <= step]
    _atomic(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8"))
