"""What a file that is not a regular file is, in words for messages

Input checks (:mod:`dcbg.io.input.safe_open`) and the output's lock file
(:mod:`dcbg.io.lockfile`) refuse anything but regular files and name
what they found instead.
"""

import stat

__all__ = ["describe_file_type"]


#: (test of ``st_mode``, phrase) for what is not a regular file, in order
FILE_TYPE_PHRASES = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def describe_file_type(mode: int) -> str:
    """What a file of `mode` (``st_mode``) is, e.g. "a FIFO (named pipe)"

    Regular files are not described: the phrase says what a refused file
    is instead ("is a directory, not a regular file").
    """
    for is_type, phrase in FILE_TYPE_PHRASES:
        if is_type(mode):
            return phrase
    return "not a regular file"
