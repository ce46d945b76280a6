"""The command line: exit codes and one-line user errors."""

import json

from typer.testing import CliRunner

from align_data.cli import app

runner = CliRunner()


def _config(tmp_path, corpus_file):
    path = tmp_path / "build.toml"
    path.write_text(f'''seed = 0
[[sources]]
name = "tiny"
path = "{corpus_file}"
[segment]
min_words = 4
max_words = 14
[interleave]
task_weights = {{ interleaved = 1.0 }}
[shards]
docs_per_shard = 2
''')
    return path


def test_build_inspect_validate_roundtrip(tmp_path, corpus_file):
    """A config without [tts] builds with the default pool (natural voices and espeak-ng)."""
    cfg = _config(tmp_path, corpus_file)
    out = tmp_path / "out"
    result = runner.invoke(app, ["build", str(cfg), "--out", str(out), "--runner", "local"])
    assert result.exit_code == 0, result.output
    assert "rows" in result.output
    result = runner.invoke(app, ["inspect", str(out)])
    assert result.exit_code == 0 and "interleaved" in result.output and "hibari:heart" in result.output
    flat = " ".join(result.output.split())  # the console wraps table titles at 80 columns
    assert "description faithfulness" in flat and "records filtered as target_unfaithful" in flat
    assert "repairs (before a record is filtered)" in flat
    result = runner.invoke(app, ["inspect", str(out), "--shard", "0", "--rows", "1"])
    assert result.exit_code == 0 and "segments:" in result.output
    flat = " ".join(result.output.split())
    # no markup swallowed; the default pool's natural voice spoke it
    assert "target [interleaved/inserter-next]:" in flat and "provenance: hibari-tts 0.2.1" in flat
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0

    again = runner.invoke(app, ["build", str(cfg), "--out", str(out), "--runner", "local"])
    assert again.exit_code == 1 and "--resume" in again.output
    resumed = runner.invoke(app, ["build", str(cfg), "--out", str(out), "--runner", "local", "--resume"])
    assert resumed.exit_code == 0 and "skipped 2" in resumed.output

    (out / "shards/00000.json").unlink()
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 1 and "shard 0: missing" in result.output


def test_user_errors_are_one_clear_line(tmp_path, corpus_file):
    cfg = _config(tmp_path, corpus_file)
    result = runner.invoke(app, ["build", str(cfg), "--out", str(tmp_path / "o"), "--set", "llm.nope=1"])
    assert result.exit_code == 1 and "llm.nope" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["build", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "not found" in result.output
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 1 and "manifest.json" in result.output
    result = runner.invoke(app, ["build", str(cfg), "--out", str(tmp_path / "o"), "--runner", "spark"])
    assert result.exit_code == 1 and "local or ray" in result.output


def test_seed_option_changes_the_config_hash(tmp_path, corpus_file):
    cfg = _config(tmp_path, corpus_file)
    for seed in ("1", "2"):
        result = runner.invoke(app, ["build", str(cfg), "--out", str(tmp_path / seed), "--runner", "local",
                                     "--seed", seed, "--limit", "1"])
        assert result.exit_code == 0, result.output
    hashes = {json.loads((tmp_path / s / "manifest.json").read_text())["config_hash"] for s in ("1", "2")}
    assert len(hashes) == 2


def test_voice_ids_are_printed_as_they_are():
    """'hibari:heart' is a voice, not the :heart: emoji code."""
    from align_data.cli import console, err

    for c in (console, err):
        with c.capture() as captured:
            c.print("voice hibari:heart: 23.2% of rows")
        assert captured.get().strip() == "voice hibari:heart: 23.2% of rows"
