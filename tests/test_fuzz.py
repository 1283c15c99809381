"""Property-based tests: any malformed row, file or option gives the one-line error (or a
counted skip), never an uncaught exception. ~1,300 generated cases per run."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from directpo.config import DPOConfig, load_config, option_names
from directpo.data import load_preferences
from directpo.errors import ConfigError, DataError
from directpo.option_loading import load_options

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "x"]),
        "content": st.text(max_size=10) | st.integers(),
    }
)
field_value = st.text(max_size=30) | st.lists(message, max_size=3) | json_values
row = st.dictionaries(
    st.sampled_from(["prompt", "chosen", "rejected", "other"]), field_value, max_size=4
)
line = (
    row.map(json.dumps)
    | st.text(alphabet=string.printable, max_size=40)
    | json_values.map(json.dumps)
)


def one_line(error: Exception) -> None:
    """One line, or (several unusable options reported at once) one line per option."""
    text = str(error)
    problems = getattr(error, "problems", None)
    if problems and len(problems) > 1:
        assert text.splitlines()[1:] == [f"  {p}" for p in problems]
        assert all(p and "\n" not in p for p in problems)
        return
    assert text and "\n" not in text


@FUZZ
@given(lines=st.lists(line, max_size=6), skip=st.booleans())
def test_jsonl_files_load_or_fail_with_one_line(lines: list[str], skip: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.jsonl"
        path.write_text("\n".join(lines))
        try:
            data = load_preferences(str(path), skip_invalid_rows=skip)
        except DataError as err:
            one_line(err)
            assert str(path) in str(err)
        else:
            assert len(data) + sum(data.skipped.values()) >= 1
            for example in data.examples:
                assert example.chosen != example.rejected


@FUZZ
@given(content=json_values, extension=st.sampled_from([".json", ".csv"]))
def test_json_and_csv_files_load_or_fail_with_one_line(content, extension: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{extension}"
        if extension == ".json":
            path.write_text(json.dumps(content))
        else:
            path.write_text("prompt,chosen,rejected\n" + str(content).replace("'", '"'))
        try:
            load_preferences(str(path))
        except DataError as err:
            one_line(err)


option_value = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5000)
    | st.floats()
    | st.text(max_size=12)
    | st.lists(st.text(max_size=6) | st.floats(), max_size=3)
)


@FUZZ
@given(
    values=st.dictionaries(
        st.sampled_from(option_names()) | st.text(max_size=10), option_value, max_size=5
    )
)
def test_any_options_build_a_config_or_fail_with_one_line(values: dict) -> None:
    try:
        config = load_options(DPOConfig, None, values)
    except ConfigError as err:
        one_line(err)
    else:
        assert isinstance(config, DPOConfig)


@FUZZ
@given(text=st.text(max_size=80))
def test_any_yaml_text_loads_or_fails_with_one_line(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text)
        try:
            load_config(str(path))
        except ConfigError as err:
            one_line(err)
