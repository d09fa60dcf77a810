"""What a file that is not a regular file is, in words for messages

Input checks (:mod:`dcbg.io.input.safe_open`) and the output's lock file
(:mod:`dcbg.io.lockfile`) refuse anything but regular files and name
what they found instead.
"""

import stat

__all__ = ["describe_file_type"]


def describe_file_type(mode: int) -> str:
    """What a file of `mode` (``st_mode``) is, e.g. "a FIFO (named pipe)"

    Regular files are not described: the phrase says what a refused file
    is instead ("is a directory, not a regular file").
    """
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
