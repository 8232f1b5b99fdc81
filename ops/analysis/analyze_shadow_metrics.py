#!/usr/bin/env python3
"""The spec's ``analyze_shadow_metrics.py``: a thin wrapper over ``ai-engine analyze``.

Usage: python3 ops/analysis/analyze_shadow_metrics.py [--hours 24] [same flags as ai-engine analyze]

The spec runs it with the system ``python3``, which lacks the engine's dependencies: it then
re-runs itself with the project's virtual environment, or says how to create one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
sys.path.insert(0, str(REPO))

try:
    from ai_engine.cli.analyze_commands import main
except ModuleNotFoundError as exc:
    python = VENV / "bin" / "python"
    if python.is_file() and Path(sys.prefix).resolve() != VENV.resolve():  # not already the venv: no loop
        os.execv(python, [str(python), __file__, *sys.argv[1:]])
    print(f"error: {exc.name} is not installed for {sys.executable}; install the engine first: "
          f"cd {REPO} && python3 -m venv .venv && .venv/bin/pip install -e .", file=sys.stderr)
    sys.exit(2)

if __name__ == "__main__":
    sys.exit(main())
