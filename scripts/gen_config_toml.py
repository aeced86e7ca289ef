#!/usr/bin/env python3
"""Write config.toml from the Settings model: every key, its default, its docstring as the comment.

Run after adding or changing a setting; tests/test_config.py fails when config.toml is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.config import render_config_toml  # noqa: E402

if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "config.toml"
    target.write_text(render_config_toml())
    print(f"wrote {target}")
