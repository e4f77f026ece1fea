"""The core of preference data imports with neither Django configured nor torch loaded."""

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import preferences

REPO = Path(__file__).resolve().parent.parent


def test_every_preferences_module_imports_without_django_or_torch():
    modules = sorted(info.name for info in pkgutil.walk_packages(preferences.__path__, "preferences."))
    assert "preferences.export_rows" in modules
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in ('django', 'torch') if m in sys.modules)\n"
        "assert not loaded, f'preferences pulled in {loaded}'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=120)
