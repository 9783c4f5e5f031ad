"""Package layout rules: imports go one way (import-linter), ruff's rules and format hold, and each
stage has one name everywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from webtext.cli import parser
from webtext.core.config import BuildConfig
from webtext.pipeline import STAGES, stage_dir

ROOT = Path(__file__).resolve().parents[1]


def test_imports_go_one_way():
    """driver (cli, demo, pipeline) -> stage packages (independent of each other) -> core."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "kept" in result.stdout


def test_ruff_lint_and_format_are_clean():
    """The rule set in pyproject.toml (pycodestyle, pyflakes, isort, bugbear, pyupgrade) and `ruff format`."""
    ruff = str(Path(sys.executable).parent / "ruff")
    for command in ([ruff, "check", "."], [ruff, "format", "--check", "."]):
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_each_stage_has_one_name_for_command_config_section_and_folder():
    commands = parser()._subparsers._group_actions[0].choices
    config = BuildConfig(out_dir="/data/out")
    for name, stage in STAGES.items():
        assert stage.name == name
        assert name in commands, f"no `webtext {name}` command"
        assert name in BuildConfig.model_fields, f"no `{name}:` config section"
        assert stage_dir(config, name) == f"/data/out/{name}"
