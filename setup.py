"""Build the compiled (Cython) kernels; all metadata lives in pyproject.toml"""

import pathlib
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args = ["/O2"]
else:
    # Portable optimisation only (no -march=native): wheels must run on
    # any CPU of the target platform.
    compile_args = ["-O3"]

KERNELS = ["rolling_median", "window_median", "window_mode", "checksum"]

extensions = [
    Extension(
        f"dcbg.kernels._{name}",
        [f"dcbg/kernels/_{name}.pyx"],
        extra_compile_args=compile_args,
        # C headers next to the .pyx (rebuild when they change)
        depends=[str(path) for path in pathlib.Path("dcbg/kernels").glob("*.h")],
    )
    for name in KERNELS
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
