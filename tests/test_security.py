"""Security rules checked on the source tree and on a build: no shells, no unpickling, nothing escapes OUT."""

from __future__ import annotations

import re
from pathlib import Path

from align_data.pipeline.build import build
from tests.conftest import make_config

PACKAGE = Path(__file__).resolve().parents[1] / "align_data"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _calls(pattern: str) -> list[str]:
    found = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line) and not line.lstrip().startswith("#"):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    return found


def test_no_shell_strings_anywhere():
    assert SOURCES
    assert _calls(r"shell\s*=\s*True|os\.system\(|os\.popen\(|commands\.getoutput") == []


def test_no_unpickling_of_weights():
    assert _calls(r"\bimport pickle\b|pickle\.loads?\(|\bdill\b|joblib\.load") == []
    # torch.load only with the restricted unpickler (tensors and plain containers)
    assert [c for c in _calls(r"torch\.load\(") if "weights_only=True" not in c] == []


def test_hostile_source_names_and_doc_ids_cannot_escape_the_output(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "../../../etc/passwd", "text": "A first sentence here for the test. '
                      'And a second sentence follows it."}\n')
    import pytest

    from align_data.errors import AlignDataError

    with pytest.raises(AlignDataError, match="sources.0.name"):  # a path-like name is refused outright
        make_config(corpus, sources=[{"name": "../../escape/me", "path": str(corpus), "format": "jsonl"}])
    cfg = make_config(corpus, sources=[{"name": "..", "path": str(corpus), "format": "jsonl", "id_column": "id"}],
                      interleave={"task_weights": {"interleaved": 1.0}})
    out = tmp_path / "deep" / "out"
    build(cfg, out)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != corpus]
    assert written and all(out in p.parents for p in written), written
    import tarfile

    with tarfile.open(out / "shards/00000.tar") as tar:
        for name in tar.getnames():
            assert "/" not in name and ".." not in name.split(".")[0], name
