"""``__all__`` of the agents and training packages lists exactly their public names (httpx-style)."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["ai_engine.agents", "ai_engine.training"])
def test_all_matches_public_names(package):
    mod = importlib.import_module(package)
    assert all(hasattr(mod, n) for n in mod.__all__)
    assert len(mod.__all__) == len(set(mod.__all__))
    own = {  # classes and functions the package itself defines and exposes
        n for n, v in vars(mod).items()
        if not n.startswith("_") and callable(v) and getattr(v, "__module__", "").startswith(package)
    }
    assert own <= set(mod.__all__)


def test_importing_agents_does_not_import_the_heavy_libraries():
    """`ai-engine --help` and the engine core import agents; torch/xgboost/lightgbm load on use."""
    import subprocess
    import sys

    code = ("import sys, ai_engine.agents, ai_engine.training, ai_engine.cli.train_commands; "
            "print(sorted(m for m in ('torch', 'xgboost', 'lightgbm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
