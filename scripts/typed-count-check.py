#!/usr/bin/env python3
"""The typed-count guard (make lint): a suite's "NAME: N passed" line must print a count that the script
made as its checks ran, never a number typed in, which stays the same when a check is dropped, skipped or
added. In the shell scripts of scripts/ and tests/ it refuses

  - a number typed into a count line: `echo "cron: 1 passed"`, `echo "citus: $((passed + 4)) passed"`;
  - a count set or raised by a number typed in: `passed=12`, `passed=$((passed + 4))` (start at 0 and
    add 1 where each check has passed, or print CHECKED, which check and assert of scripts/lib.sh count).

Usage: scripts/typed-count-check.py [DIR…] (default: scripts tests, from the project root). Prints every
such line as FILE:LINE and exits 1 if there is any.
"""
import re
import sys

from shell_scripts import shell_scripts

TYPED = [
    re.compile(r"""\becho\b.*:\s*\d+\s+passed"""),
    re.compile(r"""\becho\b.*[-+]\s*\d+\s*\)\)\s+passed"""),
    re.compile(r"""\b\w*passed\w*=(?!0\b)\d+"""),
    re.compile(r"""\b\w*passed\w*=\$\(\(\s*\w*passed\w*\s*\+\s*(?!1\b)\d+\s*\)\)"""),
]


def main():
    found = 0
    for shown, path in shell_scripts(sys.argv[1:]):
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, 1):
                if not line.lstrip().startswith("#") and any(p.search(line) for p in TYPED):
                    print(f"{shown}:{number}: {line.strip()}")
                    found += 1
    if found:
        print(f"typed-count-check: {found} count(s) typed in, not counted as the checks ran")
        return 1
    print("typed-count-check: every count printed is counted as its checks run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
