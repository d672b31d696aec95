import polars as pl
import pytest
from sklearn.model_selection import train_test_split

from nace_app.data import prepare_labelled, split, stratified_sample
from nace_app.errors import NaceAppError


def test_split_is_exactly_the_reference_notebooks(demo_frame):
    splits = split(demo_frame)
    train, rest = train_test_split(demo_frame, test_size=0.30, random_state=42)
    validation, test = train_test_split(rest, test_size=0.50, random_state=42)
    assert splits.train.equals(train) and splits.validation.equals(validation) and splits.test.equals(test)
    assert splits.train.height + splits.validation.height + splits.test.height == demo_frame.height


def test_codes_missing_from_train_are_reported():
    frame = prepare_labelled(pl.DataFrame({"code": ["10.71"] * 30 + ["62.10"], "label": [f"t{i}" for i in range(31)]}))
    splits = split(frame)
    missing = splits.codes_missing_from_train()
    assert missing == (["62.10"] if "62.10" not in splits.train["code"].to_list() else [])


def test_schema_requires_code_and_label_and_fills_name():
    with pytest.raises(NaceAppError, match="label"):
        prepare_labelled(pl.DataFrame({"code": ["10.71"]}))
    frame = prepare_labelled(pl.DataFrame({"code": ["10.71", "99.99"], "label": ["bread", "x"]}))
    assert frame["name"].to_list()[0].startswith("Manufacture of bread")
    assert frame["name"].to_list()[1] == "unknown code"


def test_stratified_sample_keeps_class_proportions(demo_frame):
    sample = stratified_sample(demo_frame, 3000)
    assert sample.height == 3000
    assert sample["code"].n_unique() > 600
