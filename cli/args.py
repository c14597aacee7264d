"""Click pieces shared by every `vipbx` command group."""

from __future__ import annotations

import click


class YamlFile(click.Path):
    # VIPBX_CONFIG lists files separated by spaces (click.Path would split on ':').
    envvar_list_splitter = None


def config_files(*, required: bool = True):  # type: ignore[no-untyped-def]
    """The FILES argument: tenant YAML files, or the VIPBX_CONFIG environment variable."""
    return click.argument("files", nargs=-1, required=required, envvar="VIPBX_CONFIG", type=YamlFile(dir_okay=False))
