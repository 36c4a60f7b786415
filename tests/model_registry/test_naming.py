"""Version order, the auto-version rule and model file names."""

from __future__ import annotations

import pytest

from twin.model_registry import InvalidVersionError
from twin.model_registry.naming import (FILE_NAME, bump, model_file_name, next_version,
                                        version_key)


@pytest.mark.parametrize("version, bumped", [
    ("1", "2"), ("9", "10"), ("1.0.0", "1.0.1"), ("1.0.9", "1.0.10"), ("2.0-rc9", "2.0-rc10"),
    ("009", "010"), ("v1.2", "v1.3"), ("beta", "beta.1"),
])
def test_bump_increments_the_last_run_of_digits(version, bumped):
    assert bump(version) == bumped


def test_versions_sort_naturally_with_numbers_compared_as_numbers():
    versions = ["1.10", "1.9.5", "10", "9", "1.2", "1.0.0"]
    assert sorted(versions, key=version_key) == ["1.0.0", "1.2", "1.9.5", "1.10", "9", "10"]


def test_next_version_starts_at_one_and_bumps_the_highest_version():
    assert next_version([]) == "1"
    assert next_version(["1.10", "1.9.5"]) == "1.11"
    assert next_version(["2", "10", "9"]) == "11"


def test_next_version_of_a_version_without_digits_appends_one():
    assert next_version(["beta"]) == "beta.1"
    assert next_version(["beta", "beta.1"]) == "beta.2"


def test_next_version_refuses_to_grow_past_the_length_limit():
    with pytest.raises(InvalidVersionError):
        next_version(["x" * 63])


def test_file_names_are_safe_and_differ_for_names_with_the_same_slug():
    first, second = model_file_name("a b", "1"), model_file_name("a-b", "1")
    assert first != second
    assert first.startswith("a-b-v1-") and FILE_NAME.fullmatch(first)
    assert FILE_NAME.fullmatch(model_file_name("../..", "1.0.0"))
