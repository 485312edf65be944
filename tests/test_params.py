import pytest

from workbench.core.params import ParameterError, as_bool, as_choice, as_float, as_int, as_list
from workbench.distillation import as_ladder


def test_list_parameters_accept_yaml_lists_and_comma_strings():
    assert as_list("a, b,c", "teachers") == ["a", "b", "c"]
    assert as_list(["a", "b"], "teachers") == ["a", "b"]
    with pytest.raises(ParameterError, match="comma-separated"):
        as_list({"a": 1}, "teachers")
    assert as_list(5, "shots") == ["5"]  # papermill -p shots 5 arrives as a number


def test_scalars():
    assert as_int("4", "epochs") == 4 and as_int(4.0, "epochs") == 4
    with pytest.raises(ParameterError, match="-p epochs 4"):
        as_int("abc", "epochs")
    with pytest.raises(ParameterError):
        as_int(True, "epochs")
    assert as_float("0.5", "lr") == 0.5
    with pytest.raises(ParameterError, match="number"):
        as_float("fast", "lr")
    assert as_choice("a", "x", ["a"]) == "a"
    assert as_ladder("all") == "all" and as_ladder("1,3") == [1, 3]


def test_booleans_as_papermill_and_yaml_write_them():
    assert [as_bool(v, "torch_compile") for v in (True, "true", "Yes", "1", 1, "on")] == [True] * 6
    assert [as_bool(v, "torch_compile") for v in (False, "False", "no", "0", 0, "off")] == [False] * 6
    with pytest.raises(ParameterError, match="torch_compile must be True or False"):
        as_bool("maybe", "torch_compile")
    with pytest.raises(ParameterError):
        as_bool(2, "torch_compile")
