"""``python -m dcbg.data [DEST]``: copy the bundled example measurement

The quick start computes a background of a copy in the current folder:
an output then references its input by a path that stays valid when
dcbg is reinstalled or the folder is moved.
"""

import pathlib
import shutil
import sys

#: the real 13-frame 80x320 measurement the quick start uses
EXAMPLE = pathlib.Path(__file__).with_name("cytoshot_2024_80x320.rtdc")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or argv[:1] in (["-h"], ["--help"]):
        print(__doc__.splitlines()[0].strip("`"))
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    dest = pathlib.Path(argv[0] if argv else "example.rtdc")
    if dest.is_dir():
        dest = dest / EXAMPLE.name
    if dest.exists():
        print(f"'{dest}' exists; not overwritten", file=sys.stderr)
        return 1
    shutil.copyfile(EXAMPLE, dest)
    print(f"Wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
