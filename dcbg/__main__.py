"""``python -m dcbg``: the dcbg command"""

from .cli import main

if __name__ == "__main__":
    main()
