"""Static checks of the Docker/KubeRay files (no Docker engine runs here): they parse and run `build`."""

from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def test_compose_runs_the_build_command_against_the_head():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    job = compose["services"]["build"]
    assert job["command"][:2] == ["build", "configs/demo.toml"]
    assert "ray-head:6379" in job["command"]
    assert compose["services"]["ray-worker"]["entrypoint"][:2] == ["ray", "start"]


def test_rayjob_entrypoint_is_the_readme_build():
    job = yaml.safe_load((DOCKER / "rayjob.yaml").read_text())
    assert job["kind"] == "RayJob"
    assert job["spec"]["entrypoint"].startswith("align-data build configs/demo.toml --out /out/")


def test_dockerfiles_install_espeak_and_prepare_models():
    for name in ("Dockerfile.cpu", "Dockerfile.gpu"):
        text = (DOCKER / name).read_text()
        assert "espeak-ng" in text and "align-data prepare" in text
