"""Documentation that states numbers agrees with the code that computes them."""

from pathlib import Path

from edge_rbmlp.size import compare_with_paper

ROOT = Path(__file__).resolve().parents[1]


def test_size_model_table_matches_the_code():
    text = (ROOT / "docs" / "size-model.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line]
    expected = compare_with_paper()
    assert len(rows) == len(expected)
    for line, r in zip(rows, expected):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == f"`{r.variant}`"
        assert cells[2:6] == [f"{r.paper_kib:.2f}", f"{r.ours_kib:.2f}", f"{r.explained_kib:.2f}", r.explanation]


def test_readme_starts_with_the_two_setup_commands():
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.strip()]
    assert lines[1] == "```sh"
    assert lines[2].startswith("make run") and lines[3].startswith("make test")
    assert "make test" in (ROOT / ".ci" / "run").read_text()
