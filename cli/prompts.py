"""`vipbx prompts ...`: build the sound files, and let ops check what a phrase is made of."""

from __future__ import annotations

import time
from pathlib import Path

import click

from prompts import speech
from prompts.build import BuildError, build
from prompts.catalogue import LANGUAGES, PROMPTS, TONES, text

from .context import paths_of
from .progress import progress


def default_sounds_dir(ctx: click.Context) -> Path:
    """`<home>/sounds`: the home of the `vipbx` group when attached, else $VIPBX_HOME."""
    return paths_of(ctx).sounds


@click.group("prompts")
def prompts_group() -> None:
    """Spoken prompts in Finnish, Swedish and English (espeak-ng + sox, 8 kHz wav).

    An operator's recording in SOUNDS/custom/LANG/NAME.wav replaces the generated prompt NAME
    at the next build.
    """


@prompts_group.command("build")
@click.option("--sounds", type=click.Path(file_okay=False, path_type=Path), help="Sounds folder. Default: $VIPBX_HOME/sounds.")
@click.option("--lang", "languages", multiple=True, type=click.Choice(LANGUAGES), help="Only these languages (repeatable).")
@click.option("--force", is_flag=True, help="Make every prompt again, even unchanged ones.")
@click.option("--jobs", type=click.IntRange(min=1), help="Parallel workers. Default: CPU count.")
@click.pass_context
def build_cmd(ctx: click.Context, sounds: Path | None, languages: tuple[str, ...], force: bool, jobs: int | None) -> None:
    """Generate missing or changed prompts, and install operators' recordings."""
    target = sounds or default_sounds_dir(ctx)
    started = time.monotonic()
    try:
        report = build(target, languages=languages or LANGUAGES, force=force, jobs=jobs, progress=progress())
    except BuildError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{target}: {len(report.generated)} generated, {len(report.custom)} recordings installed, "
        f"{len(report.skipped)} unchanged, {len(report.removed)} removed "
        f"({time.monotonic() - started:.1f} s)"
    )


@prompts_group.command("say")
@click.argument("lang", type=click.Choice(LANGUAGES))
@click.argument("name", required=False)
@click.option("--count", nargs=2, type=click.IntRange(min=0), metavar="NEW OLD", help="The message-count sentence.")
@click.option("--number", type=click.IntRange(min=0), help="A number in words.")
@click.option("--digits", "phone", metavar="PHONE", help="A phone number, digit by digit.")
def say_cmd(lang: str, name: str | None, count: tuple[int, int] | None, number: int | None, phone: str | None) -> None:
    """Print the prompt names (and their texts) that make up NAME or a composed phrase."""
    chosen = [x for x in (name, count, number, phone) if x is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of NAME, --count, --number, --digits")
    try:
        if count is not None:
            names = speech.count_messages(lang, *count)
        elif number is not None:
            names = speech.number(lang, number)
        elif phone is not None:
            names = speech.digits(lang, phone)
        else:
            names = [str(name)]
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    for item in names:
        if item in PROMPTS:
            click.echo(f"{item}\t{text(lang, item)}")
        elif item in TONES:
            click.echo(f"{item}\t({TONES[item][0]} Hz tone)")
        else:
            raise click.ClickException(f"no prompt named {item!r}")
