"""MkDocs hook: the CLI reference, rendered from ``getbill_async.cli.build_parser()``.

A page that holds the marker ``<!-- cli-reference -->`` gets, in its place, one section per
``getbill`` command with its usage and a table of its options, read from the argparse
definitions at build time. The reference cannot drift from the command: there is no second
copy to forget.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

MARKER = "<!-- cli-reference -->"
#: A fixed width, so the usage lines do not depend on the terminal that builds the site.
WIDTH = 88


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=WIDTH, max_help_position=32)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if text == argparse.SUPPRESS:
        return ""
    if "%" in text:
        # The same expansion argparse does for %(default)s and friends.
        params: dict[str, Any] = {**vars(action), "prog": prog}
        if action.choices is not None:
            params["choices"] = ", ".join(map(str, action.choices))
        text = text % params
    return text


def _argument(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return " ".join(f"`{choice}`" for choice in action.choices)
    metavar = action.metavar or action.dest.upper()
    return f"`{metavar}`" if isinstance(metavar, str) else ""


def _default(action: argparse.Action) -> str:
    default = action.default
    if action.nargs == 0 or default in (None, argparse.SUPPRESS) or action.required:
        return ""
    return f"`{default}`"


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| option | argument | default | what it does |", "|---|---|---|---|"]
    # argparse keeps its actions in a private list; it has no public way to enumerate them.
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.dest}`"
        if action.required and action.option_strings:
            names += " (required)"
        cells = (names, _argument(action), _default(action), _help(action, parser.prog))
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return rows


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((name, helps.get(name, ""), sub))
    return found


def render(parser: argparse.ArgumentParser) -> str:
    """Markdown for every command of ``parser``: usage, then a table of its options."""
    lines = [f"### `{parser.prog}`", "", (parser.description or "") + ".", ""]
    lines += [*_options_table(parser), ""]
    for name, summary, sub in _subcommands(parser):
        sub.formatter_class = _formatter
        usage = sub.format_usage().strip()
        lines += [f"### `{parser.prog} {name}`", "", summary[:1].upper() + summary[1:] + ".", ""]
        lines += ["```text", usage, "```", ""]
        lines += _options_table(sub)
        lines.append("")
    return "\n".join(lines)


def build_reference() -> str:
    """The CLI reference of ``getbill``, with defaults as on a machine with no GETBILL_* set."""
    from getbill_async.cli import build_parser

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("GETBILL_")}
    try:
        return render(build_parser())
    finally:
        os.environ.update(saved)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs event: put the generated reference where the marker stands."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, build_reference())
