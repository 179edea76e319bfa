"""The package's shape: no import circle, and one path per song from the command lines to the outputs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "activity"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports when it is imported (not inside functions or TYPE_CHECKING)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{alias.name}" for alias in node.names]
            found.update(name if (PACKAGE.parent / name.replace(".", "/")).with_suffix(".py").exists()
                         or (PACKAGE.parent / name.replace(".", "/")).is_dir() else target for name in names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("activity"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("activity"))
    return found - {module}


def import_graph() -> dict[str, set[str]]:
    return {_module_name(path): _top_level_imports(path) for path in PACKAGE.rglob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt in graph and not state.get(nxt):
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if not state.get(node):
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_circle() -> None:
    graph = import_graph()
    assert "activity.windows" in graph and "activity.predict" in graph["activity.windows"]
    assert find_cycle(graph) is None


def _calls(path: Path) -> list[tuple[str, str]]:
    """(enclosing function, called name) for every call in ``path``."""
    calls = []
    for function in ast.walk(ast.parse(path.read_text())):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    calls.append((function.name, name))
    return calls


def test_every_song_goes_through_one_pipeline() -> None:
    """Songs are read and predicted only in activity.windows, reached from the library only through
    Detector.analyse_file (infer --audio, plot_pianoroll.py and score_songs call that)."""
    song_entry_points = {"predict_file", "predict_song"}
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("windows.py", "api.py"):
            continue
        assert not [c for c in _calls(path) if c[1] in song_entry_points], f"{path} predicts songs itself"
    api_callers = {caller for caller, name in _calls(PACKAGE / "api.py") if name == "predict_file"}
    assert api_callers == {"analyse_file", "predict_file"}  # Detector.predict_file wraps windows.predict_file
    for module in ("pianoroll.py", "audio_job.py"):
        names = {name for _, name in _calls(PACKAGE / module)}
        assert names & {"analyse_file", "predict_and_save"}, module
    assert "analyse_file" in {name for caller, name in _calls(PACKAGE / "api.py") if caller == "score_songs"}


@pytest.fixture()
def one_read_per_song(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Counts the detector's streaming reads (``activity.windows.predict_file`` as api.py imported it) and
    fails on any whole-file read (``activity.audio.read_audio``, under ``load_audio``)."""
    from activity import api, audio

    reads: list[Path] = []
    streaming = api.predict_file

    def counted(model, path, **kwargs):
        reads.append(Path(path))
        return streaming(model, path, **kwargs)

    def whole_file_read(*args, **kwargs):
        raise AssertionError("the audio file was read whole besides the streaming pass")

    monkeypatch.setattr(api, "predict_file", counted)
    monkeypatch.setattr(audio, "read_audio", whole_file_read)
    return reads


def test_infer_audio_reads_each_song_once(ckpt: Path, song: tuple[Path, Path], tmp_path: Path,
                                          one_read_per_song: list[Path]) -> None:
    """infer --audio with the HTML view and MIDI truth: one streaming pass per file, the OGG made on the way."""
    from activity import infer

    flac, midi = song
    assert infer.main(["--ckpt", str(ckpt), "--audio", str(flac), "--midi", str(midi), "--formats", "npz,html",
                       "--out", str(tmp_path / "out"), "--dtype", "fp32"]) == 0
    assert one_read_per_song == [flac]
    assert (tmp_path / "out" / f"{flac.stem}.html").stat().st_size > 0


def test_plot_png_and_html_read_each_song_once(ckpt: Path, song: tuple[Path, Path], tmp_path: Path,
                                               one_read_per_song: list[Path]) -> None:
    """plot_pianoroll.py --html draws the PNG and writes the page from one streaming pass."""
    pytest.importorskip("matplotlib")
    from activity import pianoroll

    flac, _ = song
    assert pianoroll.main(["--track", flac.stem, "--test-track-dir", str(flac.parent), "--ckpt", str(ckpt),
                           "--save-dir", str(tmp_path / "plots"), "--html", "--dtype", "fp32"]) == 0
    assert one_read_per_song == [flac]
    assert {p.suffix for p in (tmp_path / "plots").iterdir()} >= {".png", ".html"}
