"""DPOConfig validates every field with a message that says what is allowed."""

import pytest

from training.config import DPOConfig


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("beta", 0.0, "beta must be > 0"),
        ("learning_rate", 2.0, "learning_rate must be in"),
        ("epochs", 0, "epochs must be a whole number from 1 to 1000, got 0"),
        ("epochs", 10**6, "epochs must be a whole number from 1 to 1000"),
        ("lora_r", 100_000, "lora_r must be a whole number from 1 to 1024"),
        ("lora_alpha", 10**6, "lora_alpha must be a whole number from 1 to 4096"),
        ("batch_size", 10**5, "batch_size must be a whole number from 1 to 1024"),
        ("max_length", 10**7, "max_length must be a whole number from 1 to 131072"),
        ("micro_batch", 0, r"micro_batch must be a whole number from 1 to 1024 \(or unset\)"),
        ("loss_type", "dpo++", "loss_type must be one of"),
        ("label_smoothing", 0.5, "label_smoothing must be in"),
        ("max_prompt_length", 600, "max_prompt_length must be in"),
        ("quantization", "int3", "quantization must be one of"),
        ("target_modules", (), "target_modules must name"),
    ],
)
def test_bad_values_are_refused_with_what_to_do(field, value, message):
    with pytest.raises(ValueError, match=message):
        DPOConfig(**{field: value})


@pytest.mark.parametrize("loss_type", ["ipo", "hinge", "kto"])
def test_label_smoothing_is_refused_outside_the_sigmoid_loss(loss_type):
    with pytest.raises(
        ValueError, match=f"label_smoothing applies to loss_type 'sigmoid'.*set it to 0 for '{loss_type}'"
    ):
        DPOConfig(loss_type=loss_type, label_smoothing=0.1)
    assert DPOConfig(loss_type=loss_type).label_smoothing == 0
    assert DPOConfig(loss_type="sigmoid", label_smoothing=0.1).label_smoothing == 0.1


def test_config_round_trips_through_a_dict():
    config = DPOConfig(beta=0.3, target_modules=("q_proj", "v_proj"))
    assert DPOConfig.from_dict(config.to_dict()) == config


def test_unknown_fields_are_named():
    with pytest.raises(ValueError, match="Unknown DPO config field.*betta"):
        DPOConfig.from_dict({"betta": 0.1})
