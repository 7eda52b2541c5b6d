"""The ``chat4all`` command (and ``python -m chat4all``): the ``[chat4all]`` extra, then the CLI.

Without the extra (a host where only tgstream was deployed) it exits 5 naming what to install.
"""

from opskit.extras import require_extra

EXTRA_MISSING = 5
"""The exit code when the ``[chat4all]`` extra is not installed (chat4all's CLI documents it)."""


def main() -> None:
    require_extra("chat4all", "chat4all", EXTRA_MISSING)
    from chat4all.cli import main as cli  # noqa: PLC0415 - its imports need the extra

    cli()


if __name__ == "__main__":
    main()
