"""``python -m synalign.app ARGS`` = the ``synalign ARGS`` console script."""

from synalign.app.cli import main

main()
