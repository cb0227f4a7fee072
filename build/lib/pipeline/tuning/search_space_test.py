import keras_tuner as kt
import pytest

from pipeline.config import apply_overrides, from_dict, read_config_file
from pipeline.tuning.search_space import DEFAULT_SPACE, Param, SearchSpaceError, overrides, validate_space
from pipeline.tuning.tuner import _declare, trial_values


@pytest.mark.parametrize("name", ["default", "smoke", "flickr8k"])
def test_the_built_in_space_can_be_tried_on_every_shipped_config(name):
    validate_space(DEFAULT_SPACE, read_config_file(name))
    keys = {p.key for p in DEFAULT_SPACE}
    # what the issue asks the space to cover
    assert {
        "text.embedding_dim",
        "text.conv_filters",
        "text.kernel_sizes",
        "text.lstm_units",
        "text.bidirectional",
        "text.kind",
        "fusion.strategy",
        "embedding_dim",
        "train.temperature",
        "train.loss",
        "train.learning_rate",
        "train.batch_size",
        "text.dropout",
        "image.crop_min_area",
    } <= keys


def test_values_become_config_overrides():
    assert overrides({"text.kernel_sizes": (2, 3), "text.bidirectional": False, "train.learning_rate": 0.001}) == [
        "text.kernel_sizes=2,3",
        "text.bidirectional=false",
        "train.learning_rate=0.001",
    ]
    config = from_dict(
        apply_overrides(read_config_file("smoke"), overrides({"text.kernel_sizes": (1, 4), "text.kind": "lstm"}))
    )
    assert config.text.kernel_sizes == (1, 4) and config.text.kind == "lstm"


def test_list_choices_round_trip_through_keras_tuner():
    space = (
        Param("text.kernel_sizes", choices=((2, 3), (2, 3, 4))),
        Param("train.learning_rate", min=1e-4, max=1e-2, sampling="log"),
        Param("text.lstm_units", min=32, max=128, step=32),
    )
    hp = kt.HyperParameters()
    for param in space:
        _declare(hp, param)
    hp.values["text.kernel_sizes"] = "[2, 3, 4]"
    values = trial_values(space, hp)
    assert values["text.kernel_sizes"] == (2, 3, 4) and 1e-4 <= values["train.learning_rate"] <= 1e-2
    assert values["text.lstm_units"] in (32, 64, 96, 128)


def test_empty_and_duplicate_spaces_are_refused():
    base = read_config_file("smoke")
    with pytest.raises(SearchSpaceError, match="empty"):
        validate_space((), base)
    with pytest.raises(SearchSpaceError, match="given twice"):
        validate_space((Param("text.kind", choices=("conv",)), Param("text.kind", choices=("lstm",))), base)
    with pytest.raises(SearchSpaceError, match="give choices, or min and max"):
        validate_space((Param("text.dropout", min=0.1),), base)
