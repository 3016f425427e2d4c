"""The `az` commands of deploy/azure/*.sh and of the deployment docs, checked without azure-cli.

`invocations` finds every `az ...` command in a shell text (continuation lines joined, commands inside
`$(...)` included). `problems` checks one against `az-commands.json`: the command exists and every
option it passes is one that command has, and its required options are given. The table is written by
running this module with azure-cli installed (it reads `az <command> --help` for each command used):

    python -m venv /tmp/azcli && /tmp/azcli/bin/pip install azure-cli==2.91.0
    python -m deploy.azure.az_commands /tmp/azcli/bin/az      # rewrites deploy/azure/az-commands.json

Standard library only."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
TABLE = HERE / "az-commands.json"
# Where az commands are written down: the scripts, and the docs a platform engineer follows.
SOURCES = [
    *sorted(HERE.glob("*.sh")),
    *(
        p
        for p in (PROJECT_ROOT / "docs" / "deployment.md", PROJECT_ROOT / "docs" / "runbook.md")
        if p.exists()
    ),
]
_STOP = set("();<>|&")


def shell_text(path: Path) -> str:
    """A script as is; of a Markdown page, its ```bash blocks."""
    text = path.read_text()
    if path.suffix == ".md":
        text = "\n".join(re.findall(r"^[ \t]*```(?:bash|sh)\n(.*?)^[ \t]*```", text, re.M | re.S))
    return text


def invocations(text: str) -> list[list[str]]:
    """Every `az` command in a shell text, as its argv (quotes removed, variables left as written)."""
    found: list[list[str]] = []
    text = re.sub(r"\\\n", " ", text)
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:
            continue  # not shell (a Markdown line that happens to hold a quote)
        argv: list[str] | None = None
        for token in tokens:
            for inner in _substitutions(token):
                found += invocations(inner)
            if argv is not None:
                if set(token) <= _STOP:
                    found.append(argv)
                    argv = None
                else:
                    argv.append(token)
            elif token == "az":
                argv = ["az"]
        if argv is not None:
            found.append(argv)
    return found


def _substitutions(token: str) -> list[str]:
    """The commands of `$(...)` inside a token (quoted command substitutions stay one token)."""
    found, start = [], token.find("$(")
    while start != -1:
        depth, i = 0, start + 1
        while i < len(token):
            depth += {"(": 1, ")": -1}.get(token[i], 0)
            if depth == 0:
                break
            i += 1
        found.append(token[start + 2 : i])
        start = token.find("$(", i)
    return found


def command_of(argv: list[str], table: dict[str, dict[str, list[str]]]) -> str | None:
    words = []
    for word in argv[1:]:
        if word.startswith("-"):
            break
        words.append(word)
    for n in range(len(words), 0, -1):
        if " ".join(words[:n]) in table:
            return " ".join(words[:n])
    return None


def problems(argv: list[str], table: dict[str, dict[str, list[str]]]) -> list[str]:
    command = command_of(argv, table)
    if command is None:
        return [f"{' '.join(argv[:4])}: not an az command in az-commands.json"]
    known = set(table[command]["options"])
    given = {a.split("=", 1)[0] for a in argv if a.startswith("-") and not re.fullmatch(r"-\d.*", a)}
    found = [f"az {command}: no option {o}" for o in sorted(given - known)]
    for required in table[command]["required"]:
        aliases = set(required.split("|"))
        if not aliases & given:
            found.append(f"az {command}: missing {required.split('|')[0]}")
    return found


def parse_help(text: str) -> dict[str, list[str]]:
    """Option names, and the required ones (aliases joined by |), from `az <command> --help`."""
    options, required = [], []
    for line in text.splitlines():
        if not re.match(r"^    -", line) or " : " not in line:
            continue  # not an option's first line (a wrapped description, a heading)
        left = line.split(" : ", 1)[0]
        names = [w for w in left.split() if w.startswith("-")]
        options += names
        if "[Required]" in left:
            required.append("|".join(names))
    return {"options": sorted(set(options)), "required": required}


def commands_used() -> set[str]:
    """`az` command names in SOURCES: the words before the first option."""
    used = set()
    for source in SOURCES:
        for argv in invocations(shell_text(source)):
            words = []
            for word in argv[1:]:
                if word.startswith("-") or word.startswith("$") or "=" in word:
                    break
                words.append(word)
            used.add(" ".join(words))
    return used


def main(az: str) -> None:
    version = json.loads(subprocess.run([az, "version"], capture_output=True, text=True, check=True).stdout)
    table = {}
    for command in sorted(commands_used()):
        result = subprocess.run([az, *command.split(), "--help"], capture_output=True, text=True)
        if result.returncode != 0 or "Arguments" not in result.stdout:
            raise SystemExit(f"az {command} --help failed: {result.stderr.strip()[-300:]}")
        table[command] = parse_help(result.stdout)
    TABLE.write_text(json.dumps({"azure-cli": version["azure-cli"], "commands": table}, indent=1) + "\n")
    print(f"{TABLE}: {len(table)} commands of azure-cli {version['azure-cli']}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "az")
