"""A rule's optional named inputs reach its stage as one path or None, never a silent pick."""

import pytest
from snakemake.iocontainers import Namedlist

from maskbench.stages.rule_inputs import optional_input


def _inputs(**named):
    return Namedlist(fromdict=named)


def test_one_file_a_missing_name_and_an_empty_input():
    inputs = _inputs(split="results/lfw/splits/identity.parquet", copies=[], aligned=["a.parquet", "b.parquet"])
    assert optional_input(inputs, "split") == "results/lfw/splits/identity.parquet"
    assert optional_input(inputs, "copies") is None  # the input function returned nothing
    assert optional_input(inputs, "not_given") is None  # this config's rule names no such input
    assert optional_input(_inputs(split=["one.parquet"]), "split") == "one.parquet"


def test_several_files_are_an_error_naming_them():
    with pytest.raises(ValueError, match=r"'aligned'.*2.*b\.parquet"):
        optional_input(_inputs(aligned=["a.parquet", "b.parquet"]), "aligned")
