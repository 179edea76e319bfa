"""The SoundFonts a synthetic set may be rendered with: name -> Debian package -> path, and families.

Only fonts of this registry (or an explicit path) are used, so that the held-out measures stay
honest: a real-audio evaluation played by a font outside this list has never been heard in training.
pretty_midi's ``TimGM6mb.sf2`` comes with pip; the others come from Debian packages
(``apt-get install PACKAGE``) and live under ``/usr/share/sounds/sf2`` or ``sf3``.

Fonts of one *family* share recorded samples (checked with :mod:`activity.synth.soundfont`, see
experiments/RESULTS.md, session of issue 19): Debian's ``sf_GMbank.sf2`` (csound) plays 392 samples
named as TimGM6mb's, 321 of them of the same length and rate; FluidR3 GM, GS and Mono all derive from
Frank Wen's FluidR3. A held-out font must come from a family no training set uses:
:data:`HELD_OUT_FONT`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ActivityError


@dataclass(frozen=True)
class FontSpec:
    """A registered SoundFont: its file, the Debian package that installs it (``None``: pip's
    pretty_midi), and the family of fonts it shares recorded samples with."""

    name: str
    package: str | None
    path: str | None
    family: str


FONTS: dict[str, FontSpec] = {
    spec.name: spec
    for spec in (
        FontSpec("TimGM6mb", None, None, "TimGM6mb"),
        FontSpec("sf_GMbank", "csound-soundfont", "/usr/share/sounds/sf2/sf_GMbank.sf2", "TimGM6mb"),
        FontSpec("FluidR3_GM", "fluid-soundfont-gm", "/usr/share/sounds/sf2/FluidR3_GM.sf2", "FluidR3"),
        FontSpec("FluidR3Mono_GM", "fluidr3mono-gm-soundfont", "/usr/share/sounds/sf3/FluidR3Mono_GM.sf3", "FluidR3"),
        FontSpec("OPL3_FM", "opl3-soundfont", "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "OPL3"),
    )
}
"""Fonts with a complete General MIDI bank 0 (all 128 programs) and a standard drum kit.

Debian's ``fluid-soundfont-gs`` (``FluidR3_GS.sf2``) is not here: it holds only the GS variation banks
1-8 and one kit, no bank 0, so it cannot play a General MIDI song on its own."""

HELD_OUT_FONT: str = "OPL3_FM"
"""The font of the cross-font test split, which no training set may use: the only family that
shares no sample name with any other font here (FM-synthesised tones, not recordings)."""

TRAINING_FONTS: tuple[str, ...] = ("TimGM6mb", "sf_GMbank", "FluidR3_GM", "FluidR3Mono_GM")
"""Fonts a training set may draw from: every registered family but the held-out one."""


def _pretty_midi_font() -> Path:
    import pretty_midi

    return Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"


def font_path(name: str) -> Path:
    """The file of a registered font; raises ActivityError naming the package to install."""
    spec = FONTS[name]
    if spec.package is None:
        path = _pretty_midi_font()
        if not path.is_file():
            raise ActivityError(f"pretty_midi's SoundFont {path} is missing; reinstall pretty_midi (pip)")
        return path
    path = Path(spec.path)
    if not path.is_file():
        raise ActivityError(f"SoundFont {name}: {path} is missing; install it with `apt-get install {spec.package}`")
    return path


def resolve_font(value: str | os.PathLike) -> tuple[str, Path]:
    """``(name, path)`` of a ``--soundfonts`` entry: a registered name, or a path to an .sf2/.sf3 file.

    A path's name is its file stem; raises ActivityError when the file is missing or the name unknown.
    """
    text = str(value)
    if text in FONTS:
        return text, font_path(text)
    path = Path(text).expanduser()
    if path.suffix.lower() in (".sf2", ".sf3") or os.sep in text:
        if not path.is_file():
            raise ActivityError(f"--soundfonts {path} does not exist (expected an .sf2 or .sf3 file)")
        return path.stem, path.resolve()
    raise ActivityError(f"--soundfonts {text!r} is neither a registered font ({', '.join(FONTS)}) nor an .sf2/.sf3 path")


def family_of(path: str | os.PathLike) -> str | None:
    """The family of the registered font stored at ``path``, or ``None`` for an unregistered file."""
    resolved = Path(path).resolve()
    for spec in FONTS.values():
        file = _pretty_midi_font() if spec.package is None else Path(spec.path)
        if file.exists() and file.resolve() == resolved:
            return spec.family
    return None
