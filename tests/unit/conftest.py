"""Model tests run seeded and never see weights shipped with the package."""

from __future__ import annotations

import pytest
import torch

from vsr_stream.models import registry


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_shipped_weights(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # Tests must not depend on (or be changed by) weights that ship with the package.
    monkeypatch.setattr(registry, "SHIPPED_WEIGHTS_DIR", tmp_path / "shipped")
