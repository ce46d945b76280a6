"""NeMo speechlm2 (SALM) data: ``multimodal_conversation`` JSON lines and an ``input_cfg`` YAML per split.

For nemo_toolkit 3.0, whose SALM recipe reads data through the lhotse dataloader; its reader of this form is
``NeMoMultimodalConversationJsonlAdapter`` (data type ``multimodal_conversation``). ``{split}.conversations.jsonl``
holds one line per (row, target)::

    {"id": "<row id>-target<k>",
     "conversations": [{"from": "User", "type": "text", "value": <prompt>},
                       {"from": "User", "type": "audio", "value": "audio/NNNNN/<clip>.flac", "duration": <s>},
                       {"from": "User", "type": "text", "value": <a text span of an interleaved row>}, ...,
                       {"from": "Assistant", "type": "text", "value": <response>}],
     "custom": {"row_id", "task", "split", "voice", "prompt_id", "target_task"}}

The row's segments follow the prompt in their order, so single-clip and interleaved rows share the file; NeMo
puts the audio locator tag where each audio turn is and joins a role's consecutive turns with a space. A
duration is the clip's exact length (samples / rate). Audio paths are relative to the jsonl's folder (OUT), which
NeMo's ``get_full_path`` resolves. ``{split}.input_cfg.yaml`` is what ``data.train_ds.input_cfg`` (or a validation
set's ``input_cfg``) names: its ``manifest_filepath`` starts with ``${oc.env:ALIGN_DATA_NEMO_DIR}`` (OmegaConf reads
the variable when NeMo loads the YAML), so the export has the same bytes wherever it is written and the user sets
the variable to the export folder; with ``--absolute-paths`` the YAML and the jsonl hold absolute paths instead.
A row whose text contains the locator tag is skipped (reason ``locator_tag_in_text``): NeMo would count it as a clip.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from align_data.errors import AlignDataError
from align_data.export.base import (
    ExportFormat,
    ExportOptions,
    Tally,
    clip_id,
    speech_clips,
)
from align_data.export.files import json_line, write_bytes
from align_data.export.parts import JsonlPartsShard, merge_parts
from align_data.export.source import SourceCorpus
from align_data.schemas import Record

# the placeholder of NeMo's speechlm2 example config (examples/speechlm2/conf/salm.yaml: model.audio_locator_tag)
SALM_LOCATOR_TAG = "<|audioplaceholder|>"
NEMO_DIR_ENV = "ALIGN_DATA_NEMO_DIR"
SUFFIX = ".conversations.jsonl"


def check_locator_tag(tag: str) -> str:
    """The tag as given, or a clear error: it must be one non-empty word (a tokenizer keeps it as one symbol)."""
    if not tag or tag != tag.strip() or any(ch.isspace() for ch in tag):
        raise AlignDataError(f"--audio-locator-tag {tag!r} must be non-empty without spaces, e.g. "
                             f"{SALM_LOCATOR_TAG!r} (the SALM model's audio_locator_tag)")
    return tag


def row_turns(record: Record, paths: dict[int, str], durations: dict[int, float]) -> list[dict]:
    """The row's input as User turns in segment order: text spans as text, each speech span's clip as audio."""
    turns = []
    for seg in record.segments:
        if seg.modality == "speech":
            turns.append({"from": "User", "type": "audio", "value": paths[seg.audio_index],
                          "duration": durations[seg.audio_index]})
        elif seg.text:
            turns.append({"from": "User", "type": "text", "value": seg.text})
    return turns


class ConversationShard(JsonlPartsShard):
    """One source shard → FLAC files in the audio tree and a conversations part per split."""

    def add(self, record: Record, tally: Tally) -> None:
        if not record.targets:
            tally.skip(record, "no_targets")
            return
        tag = self.options.audio_locator_tag
        texts = [s.text for s in record.segments if s.modality == "text"]
        texts += [t for target in record.targets for t in (target.prompt, target.response)]
        if any(tag in text for text in texts):
            tally.skip(record, "locator_tag_in_text")
            return
        clips = speech_clips(record)
        paths = {c.index: self.audio.write(clip_id(record, c.index), c.flac) for c in clips}
        body = row_turns(record, paths, {c.index: c.duration_s for c in clips})
        custom = {"row_id": record.id, "task": record.task, "split": record.split,
                  "voice": None if record.voice is None else asdict(record.voice)}
        for k, target in enumerate(record.targets):
            prompt = [{"from": "User", "type": "text", "value": target.prompt}] if target.prompt else []
            answer = [{"from": "Assistant", "type": "text", "value": target.response}]
            line = {"id": f"{record.id}-target{k}", "conversations": prompt + body + answer,
                    "custom": {**custom, "prompt_id": target.prompt_id, "target_task": target.task}}
            self._part(record.split).write(json_line(line))
        tally.exported(record, items=len(record.targets))


def input_cfg_yaml(split: str, manifest: str, tag: str, absolute: bool) -> bytes:
    """The ``input_cfg`` list for one split (JSON strings are YAML double-quoted scalars)."""
    where = ("the path is absolute (exported with --absolute-paths)" if absolute else
             f"set {NEMO_DIR_ENV} to this export's folder before training")
    lines = [
        f"# NeMo speechlm2 (SALM, nemo_toolkit 3.0) data for the {split} split of an align-data export:",
        f"#   data.train_ds.input_cfg=<this file>, or a validation set's input_cfg; {where}.",
        "# audio_locator_tag must equal the model's model.audio_locator_tag (align-data export --audio-locator-tag).",
        "- type: multimodal_conversation",
        f"  manifest_filepath: {json.dumps(manifest)}",
        f"  audio_locator_tag: {json.dumps(tag, ensure_ascii=False)}",
    ]
    return ("\n".join(lines) + "\n").encode()


def finalize(out: Path, corpus: SourceCorpus, options: ExportOptions, markers: list[dict]) -> list[str]:
    """``{split}.conversations.jsonl`` from the parts, and beside each its ``{split}.input_cfg.yaml``."""
    files = merge_parts(out, markers, suffix=SUFFIX)
    root = str(out.resolve()) if options.absolute_paths else f"${{oc.env:{NEMO_DIR_ENV}}}"
    for name in list(files):
        split = name[:-len(SUFFIX)]
        cfg = f"{split}.input_cfg.yaml"
        write_bytes(out / cfg, input_cfg_yaml(split, f"{root}/{name}", options.audio_locator_tag,
                                              options.absolute_paths))
        files.append(cfg)
    return files


NEMO = ExportFormat(
    name="nemo",
    summary="NeMo speechlm2 (SALM) multimodal_conversation jsonl + input_cfg YAML per split + FLAC tree "
            "(nemo_toolkit 3.0)",
    open_shard=ConversationShard,
    finalize=finalize,
    writes_audio_tree=True,
    audio_locator_tag=SALM_LOCATOR_TAG,
)
