#!/usr/bin/env python3
"""The spec's ``analyze_shadow_metrics.py``: a thin wrapper over ``ai-engine analyze``.

Usage: python3 ops/analysis/analyze_shadow_metrics.py --hours 24 [same flags as ai-engine analyze]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ai_engine.cli.analyze_commands import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
