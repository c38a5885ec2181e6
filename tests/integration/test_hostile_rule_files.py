"""Hostile rule files, as a user or an attacker would try them: bounded time and memory,
one ``file:line:col: message`` line each, exit 1, never a traceback.

One test runs `rules validate` over every hostile file in a real process (``e2e``); the
others run the command's entry point in this process, which prints the same lines."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from riskwatch.errors import RulesError
from riskwatch.rulefiles.loader import MAX_FILE_BYTES, load_rules
from riskwatch.rulefiles.ruletest import run_file
from riskwatch.service.wiring import load_compiled_rules
from tests.helpers import FIXTURES
from tests.integration.command import riskwatch, riskwatch_process

BAD = FIXTURES / "rules" / "bad"
BOMBS = sorted([*BAD.glob("bomb_*.yaml"), *BAD.glob("yaml_*.yaml")])
LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): \S.*$")


def _assert_located_lines(result: subprocess.CompletedProcess[str], files: list[Path]) -> None:
    """Exit 1, no traceback, every stdout line ``file:line:col: message``, each file named."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    named = set()
    for line in result.stdout.splitlines():
        match = LINE.match(line)
        assert match, line
        named.add(match["file"])
    assert named == {str(file) for file in files}, result.stdout


def _huge_files(tmp: Path) -> list[Path]:
    """Files bounded by size and by count of values rather than by shape."""
    too_big = tmp / "too_big.yaml"
    too_big.write_text("rules: []\n" + "#" * MAX_FILE_BYTES + "\n")
    wide = tmp / "wide.yaml"
    unit = "[" * 60 + "]" * 60 + ","
    wide.write_text("rules: [" + unit * (MAX_FILE_BYTES // len(unit) - 1) + "1]\n")
    many = tmp / "many.yaml"
    many.write_text("rules:\n" + "- {}\n" * 19_900)
    return [too_big, wide, many]


@pytest.mark.e2e
def test_validate_answers_every_hostile_file_with_located_lines(tmp_path: Path) -> None:
    """`rules validate` on bombs, deep nesting, bad tags, files too large, too wide or with
    too many rules: exit 1, one file:line:col line or more per file, no traceback."""
    files = [*BOMBS, *_huge_files(tmp_path)]
    before = _children_cpu()
    _assert_located_lines(riskwatch_process("rules", "validate", *map(str, files),
                                            timeout=30), files)
    assert _children_cpu() - before < 10.0  # about 1 s of CPU: one process, 20 files


def _children_cpu() -> float:
    """CPU seconds used by the finished child processes (the cores may be shared)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("name", ["bomb_billion_laughs", "bomb_self_alias", "bomb_deep_flow",
                                  "bomb_deep_block"])
def test_validate_on_each_bomb_alone_exits_1_within_seconds(name: str) -> None:
    """Each bomb alone: `rules validate FILE` exits 1 with file:line:col, no traceback."""
    path = BAD / f"{name}.yaml"
    started = time.perf_counter()
    _assert_located_lines(riskwatch("rules", "validate", str(path)), [path])
    assert time.perf_counter() - started < 5.0  # well under a second


def _cost_of_refusing(path: Path) -> tuple[float, int]:
    """CPU seconds (other processes may share the cores) and peak bytes allocated while
    the loader refuses ``path``; timed apart from the memory count, as tracemalloc makes
    the loader several times slower."""
    started = time.process_time()
    with pytest.raises(RulesError):
        load_rules([path])
    elapsed = time.process_time() - started
    tracemalloc.start()
    try:
        with pytest.raises(RulesError):
            load_rules([path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return elapsed, peak


# The two tests of the loader's cost run untraced (pytest-cov's no_cover): coverage
# tracing would add its own time to what they measure, and makes them several times slower.
@pytest.mark.no_cover
@pytest.mark.parametrize("path", BOMBS, ids=[p.stem for p in BOMBS])
def test_loading_a_hostile_file_takes_little_time_and_memory(path: Path) -> None:
    """Each hostile file is refused within a second, allocating less than 20 MB on the way."""
    elapsed, peak = _cost_of_refusing(path)
    assert elapsed < 1.0
    assert peak < 20_000_000


@pytest.mark.no_cover
def test_huge_files_take_little_time_and_memory(tmp_path: Path) -> None:
    """The largest files the reader takes in are refused within a second, under 100 MB."""
    for path in _huge_files(tmp_path):
        elapsed, peak = _cost_of_refusing(path)
        assert elapsed < 2.0, path.name  # about 0.3 s
        assert peak < 100_000_000, path.name


def test_rules_test_uses_the_bounded_reader_for_rule_and_test_files(tmp_path: Path) -> None:
    """`rules test` refuses a bomb named as a rule file, and a test file that is a bomb."""
    bomb = BAD / "bomb_billion_laughs.yaml"
    naming = tmp_path / "names_bomb_test.yaml"
    naming.write_text(f"rule_files: [{bomb}]\ntests: []\n")
    result = riskwatch("rules", "test", str(naming))
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert f"{bomb}:6:8: aliases copy more than 10,000 values" in result.stdout
    test_bomb = tmp_path / "bomb_test.yaml"
    test_bomb.write_text(bomb.read_text().replace("rules: *i", "tests: *i"))
    result = riskwatch("rules", "test", str(test_bomb))
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert f"{test_bomb}:6:8: aliases copy more than 10,000 values" in result.stdout
    with pytest.raises(RulesError):
        run_file(test_bomb)


@pytest.mark.parametrize("name", ["bomb_billion_laughs", "bomb_self_alias", "bomb_deep_flow"])
def test_daemon_loader_refuses_a_hostile_file_in_its_rules_directory(
        tmp_path: Path, name: str) -> None:
    """The daemon's loader (start and reload) raises RulesError for a bomb beside good rules."""
    (tmp_path / "good.yaml").write_text((FIXTURES / "rules" / "good" / "quiet.yaml").read_text())
    (tmp_path / "evil.yaml").write_text((BAD / f"{name}.yaml").read_text())
    started = time.process_time()  # CPU time: other processes may share the cores
    with pytest.raises(RulesError) as caught:
        load_compiled_rules([tmp_path])
    assert time.process_time() - started < 1.0
    assert [p.file for p in caught.value.problems] == [str(tmp_path / "evil.yaml")]


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO (which would block) or /dev/zero (which never ends) is refused at once."""
    fifo = tmp_path / "rules.yaml"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(RulesError) as caught:
            load_rules([path])
        assert [str(p) for p in caught.value.problems] == [
            f"{path}:1:1: cannot read: not a regular file"]
