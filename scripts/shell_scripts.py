"""The shell scripts that the make lint guards read (scripts/or-true-check.py, scripts/typed-count-check.py)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def is_shell(path):
    if path.endswith(".sh"):
        return True
    try:
        with open(path, encoding="utf-8") as file:
            first = file.readline()
    except (UnicodeDecodeError, OSError):
        return False
    return first.startswith("#!") and re.search(r"\b(ba)?sh\b", first) is not None


def shell_scripts(dirs):
    """(its path from the project root, its path) of every shell script under DIRS (none: scripts, tests)."""
    for top in dirs or [os.path.join(ROOT, "scripts"), os.path.join(ROOT, "tests")]:
        for folder, _, files in sorted(os.walk(top)):
            for name in sorted(files):
                path = os.path.join(folder, name)
                if is_shell(path):
                    yield os.path.relpath(path, ROOT), path
