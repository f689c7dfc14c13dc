"""experiments/configs: every model's config loads through `configs.load` as config_flags
would read it, with overrides and width applied and bad names refused."""
import pytest

from experiments import configs
from genjax import config as config_lib


@pytest.mark.parametrize("model", configs.MODELS)
def test_every_model_config_loads_and_validates(model):
  c = configs.load(model, "smoke", overrides={"seed": 3, "dataset": "digits"})
  assert (c.model, c.seed, c.dataset) == (model, 3, "digits")
  config_lib.validate(c)


def test_width_sets_conv_models_only():
  assert configs.load("dcgan", width=16).model_args.width == 16
  assert configs.load("cgan", "hinge", width=24).model_args.width == 24
  assert "width" not in configs.load("mlp_gan", width=16).model_args


def test_unknown_model_and_key_raise_naming_them():
  with pytest.raises(ValueError, match="Unknown experiment config 'stylegan'"):
    configs.load("stylegan")
  with pytest.raises(KeyError, match="'epoch'"):
    configs.load("dcgan", overrides={"epoch": 3})


@pytest.mark.parametrize("model,options", [("mlp_gan", "mnist,kmnist"),
                                           ("dcgan", "fashion_mnist,mnist"),
                                           ("vae_mlp", "digits,fashion_mnist")])
def test_two_dataset_options_are_an_error_not_a_silent_pick(model, options):
  with pytest.raises(ValueError, match=r"Choose one dataset option, got \["):
    configs.load(model, options)
