"""Property tests: random override strings and random YAML documents thrown at the params
loader are accepted, or refused with a one-line ParamsError (exit 2 from main.py); never
another exception."""

import contextlib
import io

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detection import main_lib
from detection.configs import factory, loader
from detection.hyperparameters import ParamsDict, ParamsError

_DEFAULTS = factory.config_generator("retinanet").as_dict()


def _paths(tree, prefix=""):
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        yield path
        if isinstance(value, dict):
            yield from _paths(value, path)


# Real keys make the generated overrides reach the type checks and restrictions, not only
# the unknown-key error.
KEYS = sorted(_paths(_DEFAULTS))
SECTION_KEYS = sorted({k.split(".")[0] for k in KEYS} | {"", "x", "train.x", "<<", "type"})

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(KEYS + SECTION_KEYS).map(lambda k: k.split(".")[-1]),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
documents = st.dictionaries(st.sampled_from(SECTION_KEYS + KEYS[:40]), values, max_size=5)

# Characters that matter to YAML, JSON and the comma form.
SYNTAX = list("abtrain_.=,[]{}():'\"-+0123456789eE \n\t#&*!|>%@`?~\\") + ["\u00e9", "\x00"]
override_text = st.one_of(
    st.text(alphabet=st.sampled_from(SYNTAX), max_size=40),
    st.text(max_size=30),
    st.builds(
        lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.text(alphabet=SYNTAX, max_size=12)
    ),
    st.builds(lambda d: yaml.safe_dump(d, default_flow_style=True), documents),
)


def _assert_accepted_or_params_error(call):
    try:
        params = call()
    except ParamsError as error:
        message = str(error)
        assert message and "\n" not in message, repr(message)
        return None
    assert isinstance(params, ParamsDict) and params.locked
    return params


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(override_text, min_size=1, max_size=3))
def test_random_override_strings(overrides):
    _assert_accepted_or_params_error(lambda: loader.load_params("retinanet", [], overrides))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_yaml_documents(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _assert_accepted_or_params_error(lambda: loader.load_params("retinanet", [str(path)]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=80), st.text(alphabet=st.sampled_from(SYNTAX), max_size=80)))
def test_random_yaml_bytes(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    _assert_accepted_or_params_error(lambda: loader.load_params("retinanet", [str(path)]))


@pytest.mark.parametrize("seed_override", ["train.total_steps=5"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(override=override_text)
def test_main_prints_one_line_or_succeeds(seed_override, override):
    """Through the command line: exit 0 with the YAML on stdout, or exit 2 and one line."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main_lib.run(
            [
                "--model=retinanet",
                "--print_config",
                f"--params_override={seed_override}",
                f"--params_override={override}",
            ]
        )
    lines = err.getvalue().splitlines()
    if code == 0:
        assert yaml.safe_load(out.getvalue())["type"] == "retinanet"
    else:
        assert code == 2 and len(lines) == 1 and lines[0].startswith("main.py: error: "), lines
        assert out.getvalue() == ""
