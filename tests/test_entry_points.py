"""Every console script pyproject.toml declares must point at something that exists."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def declared_scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_declared_entry_point_imports_and_is_callable():
    scripts = declared_scripts()
    assert scripts, "pyproject.toml declares no console script"
    for name, target in scripts.items():
        module_name, _, attr = target.partition(":")
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        assert callable(obj), f"{name} -> {target} is not callable"


def test_jobqueue_help_lists_usage():
    out = subprocess.run(
        [sys.executable, "-c", "from jobqueue.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout
