"""The campaign's rooms import one way, read from the source with ``ast``: control is the floor,
each room imports only the rooms below it, none imports the entry point that sequences it; and the
public names stay where they were. Sizes and import cycles of the whole package are
issue 16's ``tests/test_layout.py``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bulksend"

# The campaign's rooms, floor first: each may import only the rooms before it.
ROOMS = ["control", "summary", "plan", "preflight", "resume", "pipeline"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> Iterator[str]:
    """The modules of ours ``name`` imports when it runs (``TYPE_CHECKING`` blocks excluded)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in MODULES else base
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


GRAPH = {name: {d for d in _imports(name) if d in MODULES and d != name} for name in MODULES}


def test_the_check_reads_imports_as_the_rooms_write_them() -> None:
    assert {f"bulksend.campaign.{room}" for room in ROOMS} <= set(MODULES)
    assert "bulksend.campaign.control" in GRAPH["bulksend.campaign.pipeline"]  # from-import
    assert "bulksend.journal" in GRAPH["bulksend.campaign.control"]
    assert "bulksend.wire.one" in GRAPH["bulksend.campaign.plan"]  # inside a method
    assert "bulksend.campaign" not in GRAPH["bulksend"]  # only under TYPE_CHECKING there


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_imports_only_the_rooms_below_it(room: str) -> None:
    name = f"bulksend.campaign.{room}"
    below = {f"bulksend.campaign.{r}" for r in ROOMS[: ROOMS.index(room)]}
    campaign = {
        d for d in GRAPH[name] if d == "bulksend.campaign" or d.startswith("bulksend.campaign.")
    }
    assert campaign <= below, f"{room} imports {sorted(campaign - below)}"


def test_control_is_the_floor_and_the_entry_point_sequences_every_room() -> None:
    assert not any(d.startswith("bulksend.campaign") for d in GRAPH["bulksend.campaign.control"])
    assert {f"bulksend.campaign.{r}" for r in ROOMS} <= GRAPH["bulksend.campaign"]


def test_the_public_names_stay_where_they_were() -> None:
    import bulksend
    import bulksend.campaign as campaign
    from bulksend import CampaignSettings, CampaignSummary, run_campaign

    assert run_campaign is campaign.run_campaign
    assert CampaignSummary is campaign.CampaignSummary
    assert CampaignSettings.__module__ == "bulksend.config"
    for name in ("Campaign", "Snapshot", "run_campaign_async"):
        assert getattr(bulksend, name) is getattr(campaign, name)
    codes = (campaign.EXIT_OK, campaign.EXIT_INPUT, campaign.EXIT_FATAL, campaign.EXIT_LOCKED)
    assert (*codes, campaign.EXIT_STORAGE) == (0, 1, 2, 3, 4)
