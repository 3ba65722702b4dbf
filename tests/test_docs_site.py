"""The docs site: the CLI reference names every command and option; the README links resolve."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path
from types import ModuleType

from getbill_async.cli import build_parser

HOOK = Path(__file__).resolve().parents[1] / "docs" / "_hooks" / "cli_reference.py"


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_names_every_command_and_option() -> None:
    hook = load_hook()
    page = hook.on_page_markdown(f"# The CLI\n\n{hook.MARKER}\n")
    assert hook.MARKER not in page
    commands = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert commands
    for name, sub in commands[0].choices.items():
        section = page.split(f"### `getbill {name}`", 1)[1].split("\n### ", 1)[0]
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in section, (name, option)
    assert "`--version`" in page


def test_a_page_without_the_marker_is_left_alone() -> None:
    assert load_hook().on_page_markdown("# Other\n") == "# Other\n"


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc gives a heading (its default slugify)."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_the_readme_links_into_the_site_resolve() -> None:
    # The site's own links are checked by `mkdocs build --strict`; the README is not part of
    # the site, so its links into docs/ are checked here, anchors included.
    root = HOOK.parents[2]
    links = re.findall(r"\]\(([^)\s]+)\)", (root / "README.md").read_text())
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert local
    for link in local:
        path, _, anchor = link.partition("#")
        target = root / path
        assert target.is_file(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), flags=re.M)
            assert anchor in {slug(h) for h in headings}, link
