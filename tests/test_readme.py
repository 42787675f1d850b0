"""Every Python example in README.md runs as pasted, in order, in a fresh directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_examples_run_as_pasted(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_URL"}
    env["PYTHONPATH"] = str(ROOT)
    printed = []
    for i, block in enumerate(blocks):
        done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"README example {i + 1} failed:\n{block}\n{done.stderr}"
        printed.append(done.stdout)
    assert printed[0].startswith("completed {'approved': True}"), printed[0]
    assert printed[1].strip() == "paused", printed[1]
    assert "status='paused'" in printed[2], printed[2]
    assert (tmp_path / "journal.db").exists() and (tmp_path / "recording.db").exists()
