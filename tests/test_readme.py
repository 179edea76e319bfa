"""README.md's examples cannot rot: every ```bash and ```python block runs here as written, or is parsed.

A block runs unless the line before its fence is ``<!-- readme-test: parse-only (why) -->`` (a GPU, real
data, minutes). Every block, run or not, is checked: bash with ``bash -n``, Python with ``compile``, and
every ``python -m activity.X ...`` / ``python plot_pianoroll.py ...`` / ``torchrun -m activity.X`` it
contains is parsed by that command's own ``build_parser()`` (an unknown flag or a bad choice fails);
``make T`` must name a target of the Makefile and ``python experiments/x.py`` an existing script.

The runnable blocks run in README order in one temporary folder laid out like a checkout after
``make demo``, with this one mapping (nothing in the blocks is rewritten):

* ``.venv`` is the Python running the tests, ``checkpoints`` and ``plot_pianoroll.py`` the repository's,
  and ``PYTHONPATH`` is the repository, so ``activity`` is this checkout;
* ``data/synth-full-test`` (what ``make demo`` builds) and ``data/synth-tiny`` are the session's tiny
  synthetic set (tests/conftest.py; the same build as ``activity.synth --size tiny``, so building it
  again finds it complete);
* ``my_song.flac`` / ``my_song.mid`` are that set's Track01950.

``make demo``'s own steps run too, on the same tiny set (all but its build of the 225-song set).
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*parse-only\s*\((?P<why>[^)]+)\)\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
# The command lines a block may name, and the module whose build_parser() parses their arguments.
SCRIPTS = {"plot_pianoroll.py": "activity.pianoroll"}
TIMEOUT_S = 600


@dataclass
class Block:
    lang: str
    code: str
    line: int  # of the opening fence, 1-based
    parse_only: str | None  # the reason, for a block that is only parsed


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block of ``text`` with its language, first line and parse-only marker."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(before)
        blocks.append(Block(match["lang"], "\n".join(lines[i + 1 : end]) + "\n", i + 1,
                            marker["why"].strip() if marker else None))
        i = end + 1
    return blocks


def _parser(module: str):
    return importlib.import_module(module).build_parser()


def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))


def command_problems(script: str) -> list[str]:
    """What is wrong with the commands of a bash block: unknown flags or values, make targets, scripts."""
    problems: list[str] = []
    text = script.replace("\\\n", " ")
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = list(lexer)
        commands, current = [], []
        for word in words:
            if word and set(word) <= set(";&|"):
                commands.append(current)
                current = []
            else:
                current.append(word)
        commands.append(current)
        for words in commands:
            problems += _check_command(words)
    return problems


def _check_command(words: list[str]) -> list[str]:
    if not words:
        return []
    program = Path(words[0]).name
    if program == "make":
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        return [f"make {t}: no such target in the Makefile" for t in targets if t not in _make_targets()]
    if not (program.startswith("python") or program == "torchrun"):
        return []
    rest = words[1:]
    if program == "torchrun":  # torchrun [its flags] -m MODULE ARGS
        rest = rest[rest.index("-m"):] if "-m" in rest else []
    if rest[:1] == ["-m"] and len(rest) > 1:
        module, args = rest[1], rest[2:]
        if not module.startswith("activity"):
            return []
        if module == "activity.synth":
            module = "activity.synth.__main__"
    elif rest and rest[0].endswith(".py"):
        if rest[0] in SCRIPTS:
            module, args = SCRIPTS[rest[0]], rest[1:]
        else:
            return [] if (ROOT / rest[0]).is_file() else [f"{rest[0]}: no such script"]
    else:
        return []  # python -c ..., python alone
    try:
        parser = _parser(module)
    except (ImportError, AttributeError) as exc:
        return [f"{' '.join(words)}: cannot load {module}.build_parser(): {exc}"]
    parser.allow_abbrev = False  # a README names flags in full: --format for --formats is a typo here
    try:
        parser.parse_args(args)
    except SystemExit:
        return [f"{' '.join(words)}: {module} does not accept these arguments"]
    return []


# -------------------------------------------------------------------------------------------- tests


def test_every_block_is_bash_or_python_or_plain_output() -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert any(b.lang == "bash" and b.parse_only is None for b in blocks)
    assert any(b.lang == "python" and b.parse_only is None for b in blocks)
    for block in blocks:
        assert block.lang in ("bash", "python", ""), f"README line {block.line}: a ```{block.lang} block is neither run nor parsed"
        assert block.lang or block.parse_only is None, f"README line {block.line}: a marker on a plain block"


def test_every_block_parses_and_names_real_flags() -> None:
    for block in readme_blocks(README.read_text(encoding="utf-8")):
        if block.lang == "bash":
            done = subprocess.run(["bash", "-n"], input=block.code, text=True, capture_output=True)
            assert done.returncode == 0, f"README line {block.line}: bash -n: {done.stderr}"
            problems = command_problems(block.code)
            assert not problems, f"README line {block.line}: " + "; ".join(problems)
        elif block.lang == "python":
            compile(block.code, f"README.md:{block.line}", "exec")


def test_the_checker_catches_wrong_commands() -> None:
    """The parse check can fail: a wrong flag, a bad choice, a missing target or script."""
    assert command_problems(".venv/bin/python -m activity.infer --audio x.flac --no-such-flag 1")
    assert command_problems("python -m activity.infer --dtype fp16")
    assert command_problems("python plot_pianoroll.py --trak Track01950")
    assert command_problems(".venv/bin/python -m activity.infer --audio a.flac --format html")  # abbreviated
    assert command_problems("torchrun --nproc_per_node 4 -m activity.train --data d --epoch-count 3")
    assert command_problems("make demo && make nothing-of-that-name")
    assert command_problems("python experiments/no_such_script.py --x")
    assert not command_problems(".venv/bin/python -m activity.infer --audio a.flac --formats html  # a comment --x")
    blocks = readme_blocks("<!-- readme-test: parse-only (needs a GPU) -->\n```bash\nmake demo\n```\n\n```python\nx = 1\n```\n")
    assert [(b.lang, b.parse_only, b.line) for b in blocks] == [("bash", "needs a GPU", 2), ("python", None, 6)]


def test_readme_speaks_to_users_and_links_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    assert not re.search(r"\b(issue|session) \d+", text, flags=re.I), "the README names an issue or session"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not re.match(r"[a-z]+://", target):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


@pytest.fixture()
def checkout(synth_root: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder laid out like a checkout after ``make demo`` (the mapping of the module docstring)."""
    work = tmp_path / "checkout"
    (work / "data").mkdir(parents=True)
    if sys.prefix != sys.base_prefix:  # a virtual environment: the folder itself, so its site-packages come along
        (work / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    else:
        (work / ".venv" / "bin").mkdir(parents=True)
        (work / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (work / "checkpoints").symlink_to(ROOT / "checkpoints", target_is_directory=True)
    (work / "plot_pianoroll.py").symlink_to(ROOT / "plot_pianoroll.py")
    for name in ("synth-full-test", "synth-tiny"):
        (work / "data" / name).symlink_to(synth_root, target_is_directory=True)
    for suffix in (".flac", ".mid"):
        shutil.copy(synth_root / "test_track" / f"Track01950{suffix}", work / f"my_song{suffix}")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    return work, env


def _run(command: list[str], work: Path, env: dict[str, str], what: str, stdin: str | None = None) -> str:
    done = subprocess.run(command, cwd=work, env=env, input=stdin, text=True, capture_output=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def test_make_demo_steps_run_on_the_tiny_set(checkout) -> None:
    """The Makefile's demo recipe, but for its build of the 225 songs (the tiny set stands in for them)."""
    work, env = checkout
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), flags=re.M).group(1)
    values = {"$(PY)": ".venv/bin/python", "$(CKPT)": "checkpoints/demo", "$(DEMO_DATA)": "data/synth-full-test"}
    steps = [line.strip() for line in recipe.splitlines() if "activity.synth" not in line]
    assert len(steps) == 2
    for step in steps:
        for name, value in values.items():
            step = step.replace(name, value)
        assert "$(" not in step, step
        _run(["bash", "-e", "-c", step], work, env, f"make demo's step {step!r}")
    assert (work / "reports" / "demo" / "report_test.json").is_file()
    assert (work / "plots" / "Track01950.png").is_file()


def test_runnable_blocks_run_as_written(checkout) -> None:
    work, env = checkout
    python = str(work / ".venv" / "bin" / "python")
    ran = 0
    for block in readme_blocks(README.read_text(encoding="utf-8")):
        if block.parse_only is not None or block.lang not in ("bash", "python"):
            continue
        what = f"README line {block.line} ({block.lang})"
        if block.lang == "bash":
            _run(["bash", "-e", "-o", "pipefail", "-c", block.code], work, env, what)
        else:
            _run([python, "-"], work, env, what, stdin=block.code)
        ran += 1
    assert ran >= 3
    # What the blocks promise is there.
    assert {p.name for p in (work / "predictions").iterdir()} >= {"my_song.npz", "my_song.csv", "my_song.json", "my_song.html"}
    assert (work / "runs" / "try" / "best" / "model.safetensors").is_file()
