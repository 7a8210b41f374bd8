"""The size model (eq. 4-7) against every row of the paper's Tables IV, V and VII."""

import json

import pytest
from click.testing import CliRunner

from edge_rbmlp.arch import parse
from edge_rbmlp.cli import main
from edge_rbmlp.model_file import PackedModel
from edge_rbmlp.random_model import random_packed_model, zero_packed_model
from edge_rbmlp.size import (PAPER_TABLE_ROWS, compare_with_paper, packed_file_bytes, paper_size_kib,
                             paper_size_terms)

ROWS = {(r[0], r[4]): r for r in PAPER_TABLE_ROWS}

# Rows whose printed KiB eq. 4-7 reproduces as printed (pool 8, 8-bit Q): every B and Q row,
# every plain binary row and the float baselines F-128,88 / F-128,88,88 / F-256.. / F-32,16,8.
EXACT = [
    ("IV", "B-D128N,Q"), ("IV", "B-D128N,F"), ("IV", "B-128"), ("IV", "F-128,88"), ("IV", "B-D128N,D88N,Q"),
    ("IV", "B-128,88"), ("IV", "F-128,88,88"), ("IV", "B-D128N,D88N,D88N,Q"), ("IV", "B-128,88,88"),
    ("V", "F-256"), ("V", "B-D256N,Q"), ("V", "B-256"), ("V", "F-256,256"), ("V", "B-D256N,D256N,Q"),
    ("V", "B-256,256"), ("V", "F-256,256,256"), ("V", "B-D256N,D256N,D256N,Q"), ("V", "B-D256N,D256N,D256N,F"),
    ("V", "B-256,256,256"), ("VII", "B-D250N,Q"), ("VII", "B-D250N,F"), ("VII", "B-250"),
    ("VII", "B-D32N,D32N,Q"), ("VII", "B-D32N,D32N,F"), ("VII", "B-32,32,Q"), ("VII", "B-32,32"),
    ("VII", "F-32,16,8"), ("VII", "B-D32N,D16N,D8N,Q"), ("VII", "B-D32N,D16N,D8N,F"),
    ("VII", "B-32N,D16N,D8,Q,D"), ("VII", "B-32,16,8"),
]
# P rows: printed sizes match a pooled width of floor(inputs/9) (MNIST 87, CIFAR 341, IMDB 1111), not pool 8.
POOL9 = [key for key in ROWS if parse(key[1]).shortcut is not None and parse(key[1]).shortcut.kind == "P"]
# F-shortcut rows printed without N that match with an N on the shortcut.
UNPRINTED_N = [("IV", "B-D128,D88N,F"), ("IV", "B-D128N,D88N,D88N,F"), ("V", "B-D256N,F"), ("V", "B-D256N,D256N,F")]
# No simple reading reproduces these printed numbers; reported with the difference, never bent.
UNEXPLAINED = [("IV", "F-128"), ("VII", "F-250"), ("VII", "B-D250N,Q,D"), ("VII", "F-32,32")]


def test_every_row_is_classified_once():
    assert sorted(EXACT + POOL9 + UNPRINTED_N + UNEXPLAINED) == sorted(ROWS)


@pytest.mark.parametrize("key", EXACT, ids=lambda k: f"Table{k[0]}:{k[1]}")
def test_exact_rows(key):
    table, dataset, n_in, n_out, variant, printed = ROWS[key]
    assert paper_size_kib(parse(variant), n_in, n_out) == pytest.approx(printed, abs=0.01)


@pytest.mark.parametrize("key", POOL9, ids=lambda k: f"Table{k[0]}:{k[1]}")
def test_pool_rows_match_pool_nine_not_eight(key):
    table, dataset, n_in, n_out, variant, printed = ROWS[key]
    arch = parse(variant)
    assert paper_size_kib(arch, n_in, n_out, pool_size=9) == pytest.approx(printed, abs=0.01)
    # the discrepancy is stated, not hidden: with the paper's pool size 8 the size is larger
    assert paper_size_kib(arch, n_in, n_out) > printed + 1.0


@pytest.mark.parametrize("key", UNPRINTED_N, ids=lambda k: f"Table{k[0]}:{k[1]}")
def test_float_shortcut_rows_match_with_a_shortcut_batchnorm(key):
    comparison = {(c.table, c.variant): c for c in compare_with_paper()}[key]
    assert comparison.explanation.startswith("unprinted N")
    assert comparison.explained_kib == pytest.approx(comparison.paper_kib, abs=0.01)


@pytest.mark.parametrize("key", UNEXPLAINED, ids=lambda k: f"Table{k[0]}:{k[1]}")
def test_unexplained_rows_are_reported_as_such(key):
    comparison = {(c.table, c.variant): c for c in compare_with_paper()}[key]
    assert comparison.explanation == "unexplained"
    assert abs(comparison.difference_kib) > 0.01


def test_terms_by_hand_for_b_d128n_q():
    # Table IV row 3: 784*128 bits + 128 bias + 2*128 BN + Q 8-bit 784*128 + 128 bias + output 129*10
    terms = {t.name: t.total_bits for t in paper_size_terms(parse("B-D128N,Q"), 784, 10)}
    assert terms["hidden 1 weights"] == 784 * 128
    assert terms["hidden 1 batch norm"] == 2 * 128 * 32
    assert terms["shortcut Q weights"] == 8 * 784 * 128
    assert terms["output weights"] + terms["output bias"] == 129 * 10 * 32


@pytest.mark.parametrize("variant, n_in, n_out", [("B-D128N,D88N,PN", 784, 10), ("B-32,32,Q", 10000, 1),
                                                  ("B-65,F", 100, 3)])
def test_packed_bytes_is_the_real_file_size(variant, n_in, n_out):
    arch = parse(variant)
    model = random_packed_model(arch, n_in, n_out)
    assert len(model.to_bytes()) == packed_file_bytes(arch, n_in, n_out)
    assert len(zero_packed_model(arch, n_in, n_out).to_bytes()) == packed_file_bytes(arch, n_in, n_out)


def test_cli_size_json():
    result = CliRunner().invoke(main, ["size", "B-D128N,Q", "--inputs", "784", "--classes", "10", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["paper_kib"] == pytest.approx(117.29, abs=0.01)
    model = random_packed_model(parse("B-D128N,Q"), 784, 10)
    assert data["packed_bytes"] == len(model.to_bytes())
    assert data["params_by_bits"]["1"] == 784 * 128


def test_cli_size_table_and_float_model():
    result = CliRunner().invoke(main, ["size", "F-128,88", "--inputs", "784", "--classes", "10"])
    assert result.exit_code == 0, result.output
    assert "440.32" in result.output and "no packed form" in result.output


def test_cli_size_bad_arch_points_at_character():
    result = CliRunner().invoke(main, ["size", "B-128,,88", "--inputs", "784", "--classes", "10"])
    assert result.exit_code != 0
    assert "character 7" in result.output and "Traceback" not in result.output


def test_cli_paper_sizes_json():
    result = CliRunner().invoke(main, ["paper-sizes", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == len(PAPER_TABLE_ROWS)
    assert {r["explanation"] for r in rows} >= {"exact", "pool 9", "unexplained"}
