"""Plain-data summaries of a build: the manifest as JSON (``inspect --json``) and the report's numbers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from align_data.pipeline.summary import expected_voice_shares, fold_wildcard_voices, load_manifest


def build_config(out_dir: str | Path) -> dict[str, Any]:
    """The resolved config a build was made with (its config.json), or {} when absent."""
    path = Path(out_dir) / "config.json"
    return json.loads(path.read_text())["config"] if path.exists() else {}


def checks_note(target_filters: list[str]) -> str:
    """How the target checks are defined, and which of them filtered this build's records."""
    from align_data.stages.quality import checks

    used = ", ".join(target_filters) if target_filters else "none (quality.target_filters is empty)"
    rules = " ".join(line.strip() for line in (checks.__doc__ or "").splitlines()[2:] if line.strip())
    return (f"Counts are of the rows' targets; filtered records are not among them. Checks that filtered records "
            f"in this build: {used}. {rules}")


def reasons(manifest: dict) -> tuple[dict[str, int], dict[str, int]]:
    """({stage/kind: errors}, {stage/reason: filtered}) summed over the build's stage counts."""
    errors: Counter = Counter()
    filtered: Counter = Counter()
    for stage, counts in manifest.get("stages", {}).items():
        for kind, n in counts.get("errors", {}).items():
            errors[f"{stage}/{kind}"] += n
        for reason, n in counts.get("filtered", {}).items():
            filtered[f"{stage}/{reason}"] += n
    return dict(sorted(errors.items())), dict(sorted(filtered.items()))


def manifest_summary(out_dir: str | Path) -> dict[str, Any]:
    """What ``inspect`` prints, as one JSON-able dict: totals, balance against the config, stages, shards."""
    m = load_manifest(out_dir)
    expected = expected_voice_shares(out_dir)
    backends: Counter = Counter()
    for key, n in m["voices"].items():
        backends[key.split(":", 1)[0]] += n
    errors, filtered = reasons(m)
    return {
        "out_dir": str(out_dir),
        "totals": {key: m[key] for key in ("rows", "errors", "filtered", "candidates", "input_docs", "planned_docs",
                                           "complete_shards", "planned_shards")}
        | {"audio_hours": round(m["audio_seconds"] / 3600, 4), "audio_seconds": m["audio_seconds"]},
        "config_hash": m["config_hash"],
        "schema_version": m["schema_version"],
        "package_version": m["package_version"],
        "tasks": m["tasks"],
        "voices": fold_wildcard_voices(m["voices"], expected.get("voices", {})),
        "backends": dict(sorted(backends.items())),
        "genders": m.get("genders", {}),
        "splits": m.get("splits", {}),
        "configured": {group: {k: round(v, 6) for k, v in shares.items()} for group, shares in expected.items()},
        "errors_by_kind": errors,
        "filtered_by_reason": filtered,
        "stages": {name: m["stages"][name] | {"seconds": m.get("stage_seconds", {}).get(name, 0.0)}
                   for name in m.get("stage_order", list(m["stages"])) if name in m["stages"]},
        "shards": [{k: s[k] for k in ("shard_id", "input_docs", "rows", "errors", "filtered", "audio_seconds")}
                   for s in m["shards"]],
        "failed_shards": m["failed_shards"],
    }


def repair_counts(manifest: dict) -> list[tuple[str, str, int]]:
    """(stage, counter, n) of every repair counter the build's stages report: ``repairs:<check>`` (attempts
    asked again for that check), ``repair_calls`` (extra LLM prompts), ``repaired`` (records a repair saved),
    ``repairs_exhausted`` (records still failing after quality.max_repairs)."""
    rows = []
    for stage, counts in manifest.get("stages", {}).items():
        for key, n in sorted(counts.get("usage", {}).items()):
            if key.startswith("repair"):
                rows.append((stage, key, n))
    return rows


def filtered_by_attribute(manifest: dict) -> dict[str, int]:
    """Records filtered as target_unfaithful, per contradicted attribute (a record may count for several)."""
    usage = manifest.get("stages", {}).get("target_checks", {}).get("usage", {})
    return {key.split(":", 1)[1]: n for key, n in sorted(usage.items()) if key.startswith("unfaithful:")}
