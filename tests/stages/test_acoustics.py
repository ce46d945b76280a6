import numpy as np
import pytest
import soundfile as sf

from align_data.config import AcousticsConfig
from align_data.errors import AlignDataError
from align_data.schemas import AudioClip, Record, Segment, SourceRef
from align_data.stages.acoustics import AcousticsStage
from align_data.stages.acoustics.signals import c50_db, coloured_noise, power, synthetic_rir
from align_data.stages.tts.audio import decode_audio, encode_flac

RATE = 16000


def _speechlike(seconds=2.0, lead=0.0, trail=0.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    voiced = 0.2 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    voiced += 0.02 * rng.standard_normal(t.size)
    return np.concatenate([np.zeros(int(lead * RATE)), voiced, np.zeros(int(trail * RATE))]).astype(np.float32)


def _record(*clips, rid="r-1"):
    audio = tuple(AudioClip(encode_flac(c, RATE), RATE, c.size) for c in clips)
    segs = tuple(Segment("speech", "x", 0, 1, i) for i in range(len(clips)))
    return Record(id=rid, shard_id=0, source=SourceRef("t", "d", 0), text="x", segments=segs, audio=audio)


def _mono(clip):
    return decode_audio(clip.flac)[0]


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
@pytest.mark.parametrize("target", [5.0, 15.0, 25.0])
def test_measured_snr_matches_target(kind, target):
    """SNR measured from the output audio (output − clean input) is within ±2 dB of the target."""
    clean = _speechlike()
    cfg = AcousticsConfig(trim_silence=False, loudness="keep", noise_prob=1.0, noise_types=[kind],
                          snr_range_db=(target, target))
    out = AcousticsStage(cfg, seed=0)([_record(clean)])[0]
    mixed = _mono(out.audio[0])
    reference = _mono(_record(clean).audio[0])  # the same 16-bit quantization as the input clip
    measured = 10 * np.log10(power(reference) / power(mixed - reference))
    assert abs(measured - target) < 2.0
    assert out.acoustics.noise_type == kind and abs(out.acoustics.snr_db - target) < 0.5


def test_coloured_noise_spectra_tilt():
    rng = np.random.default_rng(0)
    def low_high(kind):
        spec = np.abs(np.fft.rfft(coloured_noise(kind, 32000, rng))) ** 2
        return spec[10:200].mean() / spec[-2000:].mean()
    assert low_high("white") < 3 < low_high("pink") < low_high("brown")


def test_reverb_records_c50_that_falls_with_rt60():
    rng = np.random.default_rng(0)
    short, long = (c50_db(synthetic_rir(rt, RATE, rng), RATE) for rt in (0.15, 1.2))
    assert short > long
    cfg = AcousticsConfig(trim_silence=False, loudness="keep", reverb_prob=1.0, rt60_range_s=(0.5, 0.5))
    out = AcousticsStage(cfg, seed=0)([_record(_speechlike())])[0]
    assert out.acoustics.rt60_s == 0.5 and out.acoustics.c50_db is not None and out.acoustics.noise_type is None


def test_trim_and_loudness():
    cfg = AcousticsConfig(loudness_range_dbfs=(-24.0, -24.0))
    out = AcousticsStage(cfg, seed=0)([_record(_speechlike(lead=0.5, trail=0.3))])[0]
    a = out.acoustics
    assert abs(a.trimmed_start_s - 0.5) < 0.02 and abs(a.trimmed_end_s - 0.3) < 0.02
    audio = _mono(out.audio[0])
    assert abs(audio.size / RATE - 2.0) < 0.03
    assert abs(10 * np.log10(power(audio)) - (-24.0)) < 0.5


def test_peak_limit_keeps_clips_unclipped():
    cfg = AcousticsConfig(loudness_range_dbfs=(-3.0, -3.0), peak_limit=0.9, noise_prob=1.0,
                          snr_range_db=(10.0, 10.0))
    out = AcousticsStage(cfg, seed=0)([_record(_speechlike(), _speechlike(seed=1))])[0]
    assert out.acoustics.peak <= 0.9 + 1e-3 and len(out.audio) == 2
    assert abs(out.acoustics.snr_db - 10.0) < 0.5  # scaling speech and noise together keeps the SNR


def test_same_seed_same_bytes():
    cfg = AcousticsConfig(noise_prob=0.5, reverb_prob=0.5)
    a = AcousticsStage(cfg, seed=3)([_record(_speechlike())])[0]
    b = AcousticsStage(cfg, seed=3)([_record(_speechlike())])[0]
    assert a.audio == b.audio and a.acoustics == b.acoustics


def test_noise_folder(tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "hum.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000)
    cfg = AcousticsConfig(trim_silence=False, loudness="keep", noise_prob=1.0, noise_types=["folder"],
                          noise_dir=str(tmp_path), snr_range_db=(12.0, 12.0))
    out = AcousticsStage(cfg, seed=0)([_record(_speechlike())])[0]
    assert out.acoustics.noise_type == "folder" and abs(out.acoustics.snr_db - 12.0) < 0.5
    empty = AcousticsConfig(noise_prob=1.0, noise_types=["folder"], noise_dir=str(tmp_path / "none"))
    with pytest.raises(AlignDataError, match="noise_dir"):
        AcousticsStage(empty, seed=0).setup()


def test_silent_input_is_an_error_record():
    out = AcousticsStage(AcousticsConfig(), seed=0)([_record(np.zeros(16000, np.float32))])[0]
    assert out.error is not None and out.error.stage == "acoustics"
