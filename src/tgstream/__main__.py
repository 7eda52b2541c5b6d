"""The ``tgstream`` command (and ``python -m tgstream``): the ``[tgstream]`` extra, then the CLI.

Without the extra it exits 4 (:attr:`tgstream.errors.ExitCode.TOOL`) naming what to install.
"""

from opskit.extras import require_extra

EXTRA_MISSING = 4
"""Same as :attr:`tgstream.errors.ExitCode.TOOL`: something the broadcast needs is not installed."""


def main() -> None:
    require_extra("tgstream", "tgstream", EXTRA_MISSING)
    from tgstream.cli import main as cli  # noqa: PLC0415 - only once the extra is known present

    cli()


if __name__ == "__main__":
    main()
