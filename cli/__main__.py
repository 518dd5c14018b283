"""``python -m kret.cli`` = the ``kret`` command."""

from kret.cli.main import main

main()
