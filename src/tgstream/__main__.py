"""``python -m tgstream`` is the ``tgstream`` command."""

from tgstream.cli import main

main()
