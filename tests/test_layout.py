"""The package's rooms and the direction of their imports: every import of a module, lazy
ones included, goes to its own room or to a lower one, never up and never sideways between
rooms of one rank. And no module is longer than one sitting's read."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fasterrcnn"

# Lowest first. A room may import its own modules and those of any lower rank.
RANKS: list[set[str]] = [
    {"ops"},  # pure tensor ops
    {"config"},  # ModelConfig and its JSON form
    {"modeling"},  # the network, its losses, precisions
    {"data"},  # datasets, image decoding, transforms, samplers
    {"distributed"},  # processes of a torchrun job
    {"inference"},  # Detector, the inference loop, Detections, drawing, memory
    {"zoo"},  # presets, checkpoint files, key maps, downloads, create_model
    # COCO metrics, evaluate(); a dataset's statistics, drawings and conversion
    {"evaluation", "dataset_tools"},
    {"training", "serving", "export"},
    {"cli", "compat", "engine"},  # the command line; adapters and old import paths
    {"package"},  # fasterrcnn/__init__.py and __main__.py
]
# Modules directly in fasterrcnn/ and the room each belongs to.
TOP_LEVEL = {
    "config": "config",
    "config_json": "config",
    "config_io": "config",
    "distributed": "distributed",
    "__init__": "package",
    "__main__": "package",
}
RANK = {room: rank for rank, rooms in enumerate(RANKS) for room in rooms}
LONGEST = 300  # lines
PURE_DATA = {"zoo/presets.py"}


def room_of(module: str, package: Path) -> str:
    """The room of a dotted module name under ``fasterrcnn``."""
    parts = module.split(".")
    assert parts[0] == "fasterrcnn", module
    if len(parts) == 1:
        return "package"
    if (package / parts[1]).is_dir():
        return parts[1]
    return TOP_LEVEL[parts[1]]


def module_name(path: Path, package: Path) -> str:
    relative = path.relative_to(package.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, package: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a ``fasterrcnn`` module in ``path``, wherever it is
    in the file (functions and ``TYPE_CHECKING`` blocks included)."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path, package).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from fasterrcnn.x import y`` imports module x.y when y is one.
                candidate = f"{base}.{alias.name}"
                parts = candidate.split(".")[1:]
                is_module = (package.joinpath(*parts).is_dir()) or (
                    package.joinpath(*parts).with_suffix(".py").is_file()
                )
                found.append((node.lineno, candidate if is_module else base))
    return [(line, name) for line, name in found if name.split(".")[0] == "fasterrcnn"]


def layering_violations(package: Path) -> list[str]:
    """One line per import that points up or sideways."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        source = room_of(module_name(path, package), package)
        for line, target in imported_modules(path, package):
            room = room_of(target, package)
            if room != source and RANK[room] >= RANK[source]:
                where = "sideways" if RANK[room] == RANK[source] else "up"
                relative = path.relative_to(package)
                problems.append(f"{relative}:{line} imports {target} ({source} -> {room}, {where})")
    return problems


def test_every_room_has_a_rank() -> None:
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    files = {p.stem for p in PACKAGE.glob("*.py")}
    assert rooms <= set(RANK), rooms - set(RANK)
    assert files <= set(TOP_LEVEL), files - set(TOP_LEVEL)


def test_every_import_points_down() -> None:
    assert layering_violations(PACKAGE) == []


@pytest.mark.parametrize(
    ("file", "planted", "expected"),
    [
        # a lazy import, inside a function, from the network up to the command line
        (
            "modeling/fpn.py",
            "\n\ndef _planted():\n    from fasterrcnn.cli import main\n",
            "(modeling -> cli, up)",
        ),
        # the zoo reaching up for the evaluation
        ("zoo/catalog.py", "\nimport fasterrcnn.evaluation.evaluate\n", "(zoo -> evaluation, up)"),
        # serving and export are rooms of one rank
        (
            "serving/app.py",
            "\nfrom fasterrcnn.export import runtimes\n",
            "(serving -> export, sideways)",
        ),
        # the package root is above every room
        ("data/coco.py", "\nfrom fasterrcnn import create_model\n", "(data -> package, up)"),
    ],
)
def test_a_planted_upward_import_is_caught(tmp_path, file, planted, expected) -> None:
    copy = tmp_path / "fasterrcnn"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / file).open("a") as handle:
        handle.write(planted)
    problems = layering_violations(copy)
    assert len(problems) == 1, problems
    assert problems[0].startswith(file) and problems[0].endswith(expected), problems


def test_modules_are_read_in_one_sitting() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > LONGEST
    }
    assert set(long) <= PURE_DATA, long


# What the command line may reach below the library's rooms: image and video listing, the
# error types and precisions. No dataset building, no network, no ops.
CLI_MAY_IMPORT_LOW = {
    "fasterrcnn.data.coco",
    "fasterrcnn.data.dataset_files",
    "fasterrcnn.data.images",
    "fasterrcnn.data.sources",
    "fasterrcnn.data.json_checks",
    "fasterrcnn.modeling.precision",
}


def test_command_modules_only_parse_and_print() -> None:
    """Each command's module is under 200 lines and calls the library's rooms; it reaches
    below them (ops, the network, datasets) only for errors, image listing and precisions."""
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        assert len(path.read_text().splitlines()) < 200, path.name
        for line, target in imported_modules(path, PACKAGE):
            low = RANK[room_of(target, PACKAGE)] <= RANK["data"]
            assert not low or target in CLI_MAY_IMPORT_LOW, f"{path.name}:{line} {target}"


def test_old_import_paths_are_the_new_objects() -> None:
    """The paths earlier versions of the README documented still work, as re-exports."""
    import fasterrcnn.config_io
    import fasterrcnn.config_json
    import fasterrcnn.distributed
    import fasterrcnn.export
    import fasterrcnn.inference.detector
    import fasterrcnn.zoo
    from fasterrcnn.engine import distributed, export, runtime

    assert distributed.init_distributed is fasterrcnn.distributed.init_distributed
    assert export.export is fasterrcnn.export.export_model
    assert runtime.ExportedModel is fasterrcnn.export.ExportedModel
    assert fasterrcnn.config_io.config_to_dict is fasterrcnn.config_json.config_to_dict
    assert fasterrcnn.zoo.create_model is fasterrcnn.create_model
    assert fasterrcnn.inference.detector.Detector is fasterrcnn.Detector
