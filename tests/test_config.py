import pytest

from align_data.config import apply_overrides, load_build_config
from align_data.errors import AlignDataError


def _write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


BASE = '[[sources]]\nname = "x"\npath = "corpus.txt"\n'


def test_demo_config_loads_and_hash_ignores_runner():
    cfg = load_build_config("configs/demo.toml")
    other = load_build_config("configs/demo.toml", ["runner.num_workers=5"])
    assert cfg.hash() == other.hash()
    assert cfg.hash() != load_build_config("configs/demo.toml", ["seed=1"]).hash()


def test_override_parses_types(tmp_path):
    cfg = load_build_config(_write(tmp_path, BASE), ["llm.max_new_tokens=32", "segment.dedup=false",
                                                     "sources.0.text_column=body"])
    assert cfg.llm.max_new_tokens == 32 and cfg.segment.dedup is False
    assert cfg.sources[0].text_column == "body"


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(AlignDataError, match="llm.max_tokens"):
        load_build_config(_write(tmp_path, BASE), ["llm.max_tokens=3"])


def test_bad_value_is_named(tmp_path):
    with pytest.raises(AlignDataError, match="llm.max_new_tokens"):
        load_build_config(_write(tmp_path, BASE), ["llm.max_new_tokens=-1"])


def test_min_above_max_words(tmp_path):
    with pytest.raises(AlignDataError, match="min_words"):
        load_build_config(_write(tmp_path, BASE + "[segment]\nmin_words = 50\nmax_words = 10\n"))


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(AlignDataError, match="not found"):
        load_build_config(tmp_path / "nope.toml")
    with pytest.raises(AlignDataError, match="not valid TOML"):
        load_build_config(_write(tmp_path, "[[sources]\n"))


def test_set_without_equals():
    with pytest.raises(AlignDataError, match="KEY=VALUE"):
        apply_overrides({}, ["llm.model"])


COQUI_VOICE = '[[tts.voices]]\nbackend = "coqui"\nid = "*"\ngender = "unknown"\naccent = "unknown"\n'


def test_coqui_voice_needs_a_model(tmp_path):
    with pytest.raises(AlignDataError, match="tts.coqui.model_path is not set"):
        load_build_config(_write(tmp_path, BASE + COQUI_VOICE))


def test_wildcard_voice_only_for_coqui(tmp_path):
    text = BASE + '[[tts.voices]]\nid = "*"\ngender = "male"\naccent = "American"\n'
    with pytest.raises(AlignDataError, match="only for coqui"):
        load_build_config(_write(tmp_path, text))


def test_coqui_model_paths_resolve_against_the_config_folder(tmp_path):
    model = tmp_path / "models" / "vits"
    model.mkdir(parents=True)
    (model / "checkpoint_5000.pth").write_bytes(b"")
    cfg = load_build_config(_write(tmp_path, BASE + COQUI_VOICE + '[tts.coqui]\nmodel_path = "models/vits"\n'))
    assert cfg.tts.coqui.model_path == str(model)
    # a folder with one checkpoint: that checkpoint and the config.json beside it
    assert cfg.tts.coqui.files() == (str(model / "checkpoint_5000.pth"), str(model / "config.json"))
    (model / "model.pth").write_bytes(b"")  # several: model.pth, as coqui's downloads name it
    assert cfg.tts.coqui.files()[0] == str(model / "model.pth")
