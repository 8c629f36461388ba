"""The README's performance table is rewritten from one ``make bench`` run: rows, rendering, the markers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import results
from bench.__main__ import main as bench_main

REPO = Path(__file__).resolve().parents[2]


def test_row_is_a_no_op_outside_a_bench_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(results.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    results.row("bench_x", "what", "1 s", "2 s", "2.00x", True)
    assert list(tmp_path.iterdir()) == []


def test_rows_are_read_back_in_the_order_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    monkeypatch.setenv(results.ENV, str(path))
    results.row("bench_a", "first", "1 s", "2 s", "2.00x (target >= 1.0)", True)
    results.row("bench_b", "second | piped", "3 s", "", "0.50x (target >= 0.9)", False)
    results.row("bench_b", "third", "4 s", "4 s", "1.00x (informational)", None)
    rows = results.read(path)
    assert [r.what for r in rows] == ["first", "second | piped", "third"]
    assert [r.met for r in rows] == [True, False, None]


def test_table_shows_the_run_the_verdicts_and_what_failed() -> None:
    rows = [
        results.Row("bench_a", "create", "1 s", "2 s", "2.00x (target >= 1.0)", True),
        results.Row("bench_b", "split | pack", "3 s", "1 s", "0.33x (target >= 0.9)", False),
        results.Row("bench_c", "pull + sync", "1 s", "1 s", "1.00x (informational)", None),
    ]
    text = results.table(
        rows, date="2026-12-03 17:00 UTC", machine="2 cores", load_start="0.50 0.60 0.70", load_end="1.00 0.90 0.80",
        failed=["llm"],
    )  # fmt: skip
    assert text.startswith("Figures from one `make bench` run on 2026-12-03 17:00 UTC: 2 cores; load average")
    assert "0.50 0.60 0.70 at the start, 1.00 0.90 0.80 at the end" in text
    lines = text.splitlines()
    assert "| `bench_a` | create | 1 s | 2 s | 2.00x (target >= 1.0): met |" in lines
    assert "| `bench_b` | split \\| pack | 3 s | 1 s | 0.33x (target >= 0.9): **missed** |" in lines
    assert "| `bench_c` | pull + sync | 1 s | 1 s | 1.00x (informational) |" in lines
    assert lines[-1].startswith("Benchmarks that recorded no figures")
    assert lines[-1].endswith("`bench_llm`.")


def test_rewrite_replaces_only_what_lies_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\nbefore\n{results.BEGIN}\nold table\n{results.END}\n\nafter\n")
    results.rewrite_readme(readme, "new table")
    assert readme.read_text() == f"# T\n\nbefore\n{results.BEGIN}\nnew table\n{results.END}\n\nafter\n"
    results.rewrite_readme(readme, "newer")  # idempotent shape: a second run replaces the first
    assert readme.read_text().count("newer") == 1
    assert "new table" not in readme.read_text()


@pytest.mark.parametrize(
    "body",
    [
        "no markers\n",
        f"{results.BEGIN}\nonly the start\n",
        f"{results.END}\n{results.BEGIN}\nreversed\n",
        f"{results.BEGIN}\n{results.END}\n{results.BEGIN}\n{results.END}\n",
    ],
    ids=["none", "no-end", "reversed", "twice"],
)
def test_rewrite_refuses_a_readme_without_exactly_one_pair_of_markers(tmp_path: Path, body: str) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(body)
    with pytest.raises(ValueError, match="bench markers"):
        results.check_readme(readme)
    with pytest.raises(ValueError, match="bench markers"):
        results.rewrite_readme(readme, "x")
    assert readme.read_text() == body


def test_the_project_readme_has_the_markers_make_bench_needs() -> None:
    results.check_readme(REPO / "README.md")


def test_readme_needs_every_benchmark_and_markers_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_main(["--readme", str(REPO / "README.md"), "pack"]) == 2
    assert "run every benchmark" in capsys.readouterr().err
    bad = tmp_path / "README.md"
    bad.write_text("no markers\n")
    assert bench_main(["--readme", str(bad)]) == 2  # refused up front, not after an hour of benchmarks
    assert "bench markers" in capsys.readouterr().err
    assert bench_main(["nosuch"]) == 2
    assert "unknown benchmark(s): nosuch" in capsys.readouterr().err


def test_bench_help_lists_the_benchmarks() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "datapath" in out
    assert "--readme" in out
