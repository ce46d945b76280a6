"""Pure signal functions: coloured noise, mixing at an SNR, synthetic room impulse responses and C50."""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def db(ratio: float) -> float:
    return 10.0 * np.log10(max(ratio, EPS))


def coloured_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f² power) noise of unit power."""
    white = rng.standard_normal(n)
    if kind == "white":
        noise = white
    else:
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n)
        freqs[0] = freqs[1] if n > 1 else 1.0
        exponent = {"pink": 0.5, "brown": 1.0}[kind]  # amplitude ∝ f^-exponent
        noise = np.fft.irfft(spectrum / freqs**exponent, n)
    noise = noise - noise.mean()
    return (noise / np.sqrt(max(power(noise), EPS))).astype(np.float32)


def fit_noise(noise: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample excerpt of ``noise`` (looped when shorter), at unit power."""
    if noise.size == 0:
        raise ValueError("empty noise")
    reps = int(np.ceil((n + noise.size) / noise.size))
    looped = np.tile(noise, reps)
    start = int(rng.integers(0, noise.size))
    out = looped[start:start + n].astype(np.float64)
    return (out / np.sqrt(max(power(out), EPS))).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Speech plus ``noise`` scaled so that speech power / noise power = ``snr_db``; returns (mix, scaled noise)."""
    gain = np.sqrt(power(speech) / (max(power(noise), EPS) * 10 ** (snr_db / 10)))
    scaled = (noise * gain).astype(np.float32)
    return (speech + scaled).astype(np.float32), scaled


def synthetic_rir(rt60_s: float, rate: int, rng: np.random.Generator, direct_to_tail_db: float = 0.0) -> np.ndarray:
    """A room impulse response: a direct impulse, then exponentially decaying noise reaching -60 dB at ``rt60_s``."""
    n = max(2, int(rt60_s * rate * 1.2))
    t = np.arange(n) / rate
    decay = np.exp(-6.9078 * t / rt60_s)  # ln(1000): amplitude -60 dB at rt60
    tail = rng.standard_normal(n) * decay
    tail[0] = 0.0
    tail *= np.sqrt(10 ** (-direct_to_tail_db / 10) / max(float(np.sum(tail**2)), EPS))
    rir = tail
    rir[0] = 1.0
    return rir.astype(np.float32)


def c50_db(rir: np.ndarray, rate: int) -> float:
    """Clarity C50: energy in the first 50 ms of the response over the energy after it, in dB."""
    split = int(0.05 * rate)
    early = float(np.sum(np.square(rir[:split], dtype=np.float64)))
    late = float(np.sum(np.square(rir[split:], dtype=np.float64)))
    return db(early / max(late, EPS))


def trim_silence(x: np.ndarray, rate: int, top_db: float) -> tuple[np.ndarray, int, int]:
    """Drop leading/trailing audio more than ``top_db`` below the loudest 10 ms; returns (audio, cut_start, cut_end)."""
    frame = max(1, rate // 100)
    n_frames = x.size // frame
    if n_frames == 0:
        return x, 0, 0
    frames = x[: n_frames * frame].astype(np.float64).reshape(n_frames, frame)
    energy = np.mean(np.square(frames), axis=1)
    loud = np.flatnonzero(10 * np.log10(energy + EPS) > 10 * np.log10(energy.max() + EPS) - top_db)
    if loud.size == 0:
        return x, 0, 0
    start = int(loud[0] * frame)
    end = int(min(x.size, (loud[-1] + 1) * frame))
    return x[start:end], start, x.size - end
