"""The text tables eval and report print."""

from aectl.tables import align_rows, display_width, format_metric, format_value


def test_combining_marks_take_no_column():
    assert display_width("mean ρ̂") == 6
    assert align_rows([["mean ρ̂", "1"], ["PSNR", "22"]]) == ["mean ρ̂  1", "PSNR    22"]


def test_right_aligned_columns_and_no_trailing_spaces():
    rows = [["job", "model", "PSNR"], ["a", "vae", "7.5"], ["bb", "", "10"]]
    assert align_rows(rows, right=[2]) == ["job  model  PSNR", "a    vae     7.5", "bb            10"]


def test_numbers_as_the_tables_print_them():
    assert format_value(None) == "" and format_value(3) == "3" and format_value(0.123456) == "0.1235"
    assert format_value(123456.0) == "1.235e+05"  # report: 4 digits throughout
    assert format_metric(123456.0) == "1.2346e+05" and format_metric(12.3456) == "12.35"
    assert format_metric(float("nan")) == "nan" and format_metric(True) == "True"
