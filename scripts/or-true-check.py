#!/usr/bin/env python3
"""The `|| true` guard (make lint): a command's failure swallowed with `|| true` (or `|| :`) in the shell
scripts of scripts/ and tests/ lets a test pass without its condition. It is allowed only

  - in cleanup: a `trap` command, a function whose name says it cleans up (stop, clean, teardown,
    put_back), or a cleanup command (kill, rm, rmdir, wait, `pg_ctl … stop`, ROLLBACK PREPARED);
  - with a comment saying why: a comment on the same line, or the comment lines right above that
    name `|| true` and say why.

Usage: scripts/or-true-check.py [DIR…] (default: scripts tests, from the project root). Prints every
other `|| true` as FILE:LINE and exits 1 if there is any.
"""
import re
import sys

from shell_scripts import shell_scripts

SWALLOW = re.compile(r"\|\|\s*(true|:)(?=\s|;|\)|\}|$)")
FUNCTION = re.compile(r"^(\s*)(?:function\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*\(\)\s*\{")
CLEANUP_FUNCTION = re.compile(r"stop|clean|teardown|put_back")
CLEANUP_COMMAND = re.compile(
    r"(^|[;&|{(]|\bdo\b|\bthen\b|\belse\b)\s*(kill|rm|rmdir|wait)\b"
    r"|\bpg_ctl\b.*\bstop\b|ROLLBACK PREPARED"
)


def code_and_comment(line):
    """The line split at its comment: a `#` outside quotes, at the start or after a blank."""
    quote = None
    escaped = False
    for at, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (at == 0 or line[at - 1] in " \t"):
            return line[:at], line[at:]
    return line, ""


def offences(path):
    with open(path, encoding="utf-8") as file:
        lines = file.read().split("\n")
    functions = []  # (name, indent) of the functions the line is in
    found = []
    for number, line in enumerate(lines, 1):
        code, comment = code_and_comment(line)
        start = FUNCTION.match(code)
        if start and not code.rstrip().endswith("}"):
            functions.append((start.group(2), start.group(1)))
        elif functions and re.fullmatch(r"\s*\}\s*", code) and code.index("}") == len(functions[-1][1]):
            functions.pop()
        for swallow in SWALLOW.finditer(code):
            before = code[: swallow.start()]
            # The command whose failure is swallowed: from the last separator on.
            # Substitutions closed before it are arguments, not the command: dropped first.
            closed = before
            while re.search(r"\$\([^()]*\)", closed):
                closed = re.sub(r"\$\([^()]*\)", "ARG", closed)
            command = re.split(r"\|\||&&|;|\$\(|`", closed)[-1]
            # The comment block right above the line.
            above, at = [], number - 2
            while at >= 0 and lines[at].strip().startswith("#"):
                above.append(lines[at])
                at -= 1
            allowed = (
                comment.strip() != ""
                or any("|| true" in text for text in above)
                or re.search(r"\btrap\b", before) is not None
                or CLEANUP_COMMAND.search(command) is not None
                or any(CLEANUP_FUNCTION.search(name) for name, _ in functions)
                or (start is not None and CLEANUP_FUNCTION.search(start.group(2)) is not None)
            )
            if not allowed:
                found.append((number, line.strip()))
    return found


def main():
    failed = 0
    for shown, path in shell_scripts(sys.argv[1:]):
        for number, text in offences(path):
            print(f"{shown}:{number}: {text}")
            failed += 1
    if failed:
        print(
            f"or-true-check: {failed} `|| true` outside cleanup and without a comment saying why "
            "(a comment on the line, or a comment line above naming `|| true`)"
        )
        return 1
    print("or-true-check: every `|| true` is cleanup or says why")
    return 0


if __name__ == "__main__":
    sys.exit(main())
