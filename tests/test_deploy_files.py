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


DOCKERFILE_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                           "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions, continuation lines joined (the parse rules of the Dockerfile reference)."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line}" if current else line
        if current.endswith("\\"):
            current = current[:-1]
            continue
        lines.append(current)
        current = ""
    assert not current, "a continuation line runs off the end"
    return lines


def test_dockerfiles_parse_and_copy_what_the_install_needs():
    for name in ("Dockerfile.cpu", "Dockerfile.gpu"):
        steps = _instructions((DOCKER / name).read_text())
        assert steps[0].startswith("FROM "), name
        assert all(step.split()[0] in DOCKERFILE_INSTRUCTIONS for step in steps), name
        copied = {step.split()[1] for step in steps if step.startswith("COPY ")}
        assert {"align_data", "configs", "examples"} <= copied and "pyproject.toml" in copied, name
        assert any("pip install" in step and "-e" in step for step in steps), name


def test_compose_commands_are_valid_builds():
    """Every build job's --set overrides apply to the config it names (what `align-data build` would do)."""
    from align_data.config import load_build_config

    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    jobs = {name: svc for name, svc in compose["services"].items() if (svc.get("command") or [None])[0] == "build"}
    assert set(jobs) == {"build", "build-gpu"}
    root = DOCKER.parent
    for name, svc in jobs.items():
        command = svc["command"]
        overrides = [command[i + 1] for i, arg in enumerate(command) if arg == "--set"]
        cfg = load_build_config(root / command[1], overrides)
        assert cfg.runner.num_workers == 2, name
    gpu = compose["services"]["ray-gpu-worker"]
    assert "--num-gpus=1" in gpu["entrypoint"] and gpu["profiles"] == ["gpu"]
    assert compose["services"]["llm"]["entrypoint"][:2] == ["vllm", "serve"]
    assert load_build_config(root / "configs/demo.toml", [a for i, a in enumerate(jobs["build-gpu"]["command"])
                                                          if i and jobs["build-gpu"]["command"][i - 1] == "--set"]
                             ).llm.backend == "openai"
