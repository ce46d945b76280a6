"""Audit a build's DeSTA2 descriptions against their clips: per attribute, how many kept description targets the
faithfulness check finds contradicted, how many description rows were filtered (and why), and what the repairs
cost. Reads the shards, filtered/ and the manifest only; works on builds of older schema versions too.

    python benchmarks/audit_descriptions.py BUILD [--sample N]   # N kept descriptions printed for reading by hand
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from align_data.schemas import Target
from align_data.stages.quality.checks import UNFAITHFUL_ATTRIBUTES, row_facts, shown_texts, unfaithful


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("--sample", type=int, default=0, help="print this many kept descriptions with their seeds")
    args = parser.parse_args()
    kept, contradicted, by_attribute, sample = 0, 0, Counter(), []
    for path in sorted((args.build / "shards").glob("*.parquet")):
        names = pq.ParquetFile(path).schema_arrow.names
        columns = [c for c in ("id", "text", "task", "voice", "paralinguistics", "description", "targets",
                               "provenance") if c in names]
        for row in pq.read_table(path, columns=columns).to_pylist():
            if row["task"] != "description":
                continue
            facts = row_facts(row)
            shown = shown_texts((row.get("provenance") or {}).get("shots"))
            for raw in row["targets"]:
                target = Target(**{k: raw[k] for k in Target.__slots__})
                found = unfaithful(target, row["text"], facts, shown)
                kept += 1
                contradicted += bool(found)
                by_attribute.update(set(c.attribute for c in found))
                if len(sample) < args.sample:
                    sample.append((row["id"], row["description"], target.response, found))
    filtered = Counter()
    for path in sorted((args.build / "filtered").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            item = json.loads(line)
            if item.get("task") == "description":
                filtered[item["kind"]] += 1
    manifest = json.loads((args.build / "manifest.json").read_text())
    usage = {stage: counts.get("usage", {}) for stage, counts in manifest["stages"].items()}
    described = kept + sum(filtered.values())
    print(f"build: {args.build}  (schema {manifest['schema_version']})")
    print(f"description rows: {described} reached the LLM stages; kept {kept}"
          + (f" ({100 * kept / described:.1f} %)" if described else "")
          + (f"; filtered {dict(filtered)}" if filtered else "")
          + ("" if filtered or "task" in _first_filtered(args.build) else " (filtered lines name no task: older build)"))
    print(f"kept descriptions contradicting their clip: {contradicted} of {kept}"
          + (f" ({100 * contradicted / kept:.1f} %)" if kept else ""))
    print(f"{'attribute':<10} {'contradicted':>12} {'share':>7} {'filtered for it':>16}")
    unfaithful_usage = usage.get("target_checks", {})
    for attribute in UNFAITHFUL_ATTRIBUTES:
        n = by_attribute.get(attribute, 0)
        print(f"{attribute:<10} {n:>12} {100 * n / max(kept, 1):>6.1f}% "
              f"{unfaithful_usage.get(f'unfaithful:{attribute}', 0):>16}")
    targets = usage.get("targets", {})
    print("LLM prompts generated: {calls} (+{hits} from the cache); repair prompts {repair}; records repaired {ok}, "
          "still failing {bad}".format(calls=targets.get("calls", 0), hits=targets.get("cache_hits", 0),
                                       repair=targets.get("repair_calls", 0), ok=targets.get("repaired", 0),
                                       bad=targets.get("repairs_exhausted", 0)))
    repairs = {k: v for stage in usage.values() for k, v in stage.items() if k.startswith("repairs:")}
    if repairs:
        print("repairs by check: " + ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in sorted(repairs.items())))
    for record_id, seed, answer, found in sample:
        print(f"\n{record_id}\n  seed:   {seed}\n  answer: {answer}\n  check:  "
              + ("; ".join(f"{c.attribute}: {c.said!r} vs {c.fact}" for c in found) or "faithful"))


def _first_filtered(build: Path) -> dict:
    for path in sorted((build / "filtered").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            return json.loads(line)
    return {}


if __name__ == "__main__":
    main()
