"""Example measurements to try dcbg on: ``python -m dcbg.data --help``

See `DESCRIPTION`.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import secrets
import sys

#: what ``--help`` says the command does
DESCRIPTION = """\
python -m dcbg.data [DEST] writes the bundled 13-frame CytoShot measurement
without its stored background (image_bg, bg_off), so that the first
background you open is the one dcbg computed.

python -m dcbg.data --synthetic N [DEST] writes a realistic synthetic
measurement of N frames (dcbg.testing's image model: the example's
background, sensor noise, drift, flicker and real cells, fixed seed), on
which every method runs at its defaults.

Running the same command again keeps a file that already holds what it
would write (exit status 0) and never overwrites another file."""

#: folder of the bundled measurements
DATA_DIR = pathlib.Path(__file__).parent
#: the real 13-frame 80x320 measurement the quick start uses
EXAMPLE = DATA_DIR / "cytoshot_2024_80x320.rtdc"
#: what each bundled measurement is (``--help`` lists them)
BUNDLED = {
    "cytoshot_2024_80x320.rtdc": "CytoShot 2024, 13 frames of 80x320 px, with "
    "dcnum's background (sparsemed:k=200) stored",
    "cytoshot_legacy_with_bg_80x400.rtdc": "older CytoShot layout, 11 frames "
    "of 80x400 px, with a stored image_bg (input for the 'copy' method)",
    "shapein_empty_80x250.rtdc": "Shape-In measurement without events",
}
#: features of the stored background, left out of the example's copy
BACKGROUND_FEATURES = ("image_bg", "bg_off")
#: root attributes that claim the stored background for dcnum's runner
#: (dcbg.io.conventions.PIPELINE_BACKGROUND_ATTRS), left out with it
BACKGROUND_CLAIMS = (
    "pipeline:dcnum generation",
    "pipeline:dcnum data",
    "pipeline:dcnum background",
)
#: default file names
EXAMPLE_DEST = "example.rtdc"
SYNTHETIC_DEST = "synthetic.rtdc"
#: seed of the synthetic measurements: the same N gives the same file
SYNTHETIC_SEED = 42
#: the synthetic model's frames per second (CytoShot's 3447.5 Hz): 5,000
#: frames span 1.45 s, two images of the sparse median's default 1 s series
SYNTHETIC_FRAMES_HELP = "e.g. 5000: 1.45 s of a 3447.5 Hz camera, 75 MB"
#: most frames a synthetic measurement may have: 10^6 frames of 80x320
#: are ~15 GB, more than anyone wants from an example generator
MAX_SYNTHETIC_FRAMES = 1_000_000


def _epilog() -> str:
    lines = [f"bundled measurements (in {DATA_DIR}):"]
    lines += [f"  {name}:\n      {what}" for name, what in BUNDLED.items()]
    lines += [
        "",
        "The stored background of cytoshot_2024_80x320.rtdc was computed by",
        "dcnum (another program, other parameters) from the whole original",
        "recording, in which it found 8,415 events; the file keeps 13 of them.",
        "dcbg computes from these 13 frames, so its background differs (by up",
        "to 34 grey levels with the quick start's parameters).",
    ]
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dcbg.data",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "dest",
        nargs="?",
        type=pathlib.Path,
        help=f"file or folder to write (default: {EXAMPLE_DEST}, "
        f"with --synthetic {SYNTHETIC_DEST})",
    )
    parser.add_argument(
        "--synthetic",
        type=int,
        metavar="N",
        help=f"write a synthetic measurement of N frames ({SYNTHETIC_FRAMES_HELP})",
    )
    return parser


def write_example(path: pathlib.Path):
    """The bundled example without its stored background, written to `path`

    Objects are copied one by one (HDF5's object copy keeps chunks and
    filters), so the file holds no space of the left-out features and is
    the same, byte for byte, every time.
    """
    import h5py
    import hdf5plugin  # noqa: F401 (registers the Zstandard filter)

    with h5py.File(EXAMPLE, "r") as src, h5py.File(path, "w") as dst:
        for key, value in src.attrs.items():
            if key not in BACKGROUND_CLAIMS:
                dst.attrs[key] = value
        for name, obj in src.items():
            if name != "events":
                src.copy(obj, dst, name)
                continue
            events = dst.create_group("events")
            for key, value in obj.attrs.items():
                events.attrs[key] = value
            for feature, item in obj.items():
                if feature not in BACKGROUND_FEATURES:
                    obj.copy(item, events, feature)


def write_synthetic(path: pathlib.Path, n_frames: int):
    """A synthetic measurement of `n_frames` frames at `path`

    The run identifier names the seed and the number of frames (not the
    path), so the same N gives the same measurement wherever it is written.
    """
    import h5py

    from dcbg.run_options import cpu_count
    from dcbg.testing import make_synthetic_measurement

    make_synthetic_measurement(
        path, n_frames, seed=SYNTHETIC_SEED, num_workers=cpu_count()
    )
    with h5py.File(path, "r+") as h5:
        h5.attrs["experiment:run identifier"] = synthetic_identifier(n_frames)


def synthetic_identifier(n_frames: int) -> str:
    """Run identifier of the synthetic measurement of `n_frames` frames"""
    return f"dcbg-synthetic-s{SYNTHETIC_SEED}-n{n_frames}"


def is_synthetic(path: pathlib.Path, n_frames: int) -> bool:
    """Whether `path` is the synthetic measurement of `n_frames` frames"""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return (
                h5.attrs.get("experiment:run identifier")
                == synthetic_identifier(n_frames)
                and h5["events/image"].shape[0] == n_frames
            )
    except (OSError, KeyError, AttributeError):  # not HDF5, not a measurement
        return False


def kept(dest: pathlib.Path, same: bool) -> int:
    """Report an existing `dest`; the exit status"""
    if same:
        print(f"'{dest}' is already this measurement; kept")
        return 0
    print(f"'{dest}' exists and is another file; not overwritten", file=sys.stderr)
    return 1


def install(staged: pathlib.Path, dest: pathlib.Path) -> int:
    """Move `staged` to `dest` unless it exists; the exit status"""
    if os.name == "nt":
        os.rename(staged, dest)  # never replaces an existing file
    else:
        os.link(staged, dest)  # fails if dest appeared in the meantime
    print(f"Wrote {dest}")
    return 0


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    synthetic = args.synthetic is not None
    if synthetic and not 1 <= args.synthetic <= MAX_SYNTHETIC_FRAMES:
        parser.error(
            f"--synthetic N must be from 1 to {MAX_SYNTHETIC_FRAMES:,} frames, "
            f"got {args.synthetic}"
        )
    default = SYNTHETIC_DEST if synthetic else EXAMPLE_DEST
    dest = args.dest or pathlib.Path(default)
    if dest.is_dir():
        dest = dest / default
    if dest.suffix != ".rtdc":
        parser.error(f"DEST must end with .rtdc, got '{dest}'")
    if not dest.parent.is_dir():
        parser.error(f"the folder of '{dest}' does not exist")
    if synthetic and dest.exists():
        return kept(dest, is_synthetic(dest, args.synthetic))
    # written beside DEST and moved into place when complete: an
    # interrupted run leaves no half-written measurement under its name
    staged = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.partial")
    try:
        if synthetic:
            write_synthetic(staged, args.synthetic)
        else:
            write_example(staged)
            if dest.exists():
                return kept(dest, dest.read_bytes() == staged.read_bytes())
        try:
            return install(staged, dest)
        except FileExistsError:
            return kept(dest, False)
    finally:
        staged.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
