"""The override parser for callers without a command line (the Python API): Hydra's compose
API over the same configs, schemas and presets as `aectl train`."""

from aectl.config.errors import AectlError


def compose_train_config(overrides: list[str]):
    """`aectl train <overrides>`'s config as a validated aectl.config.TrainConfig."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from aectl.cli.hydra_run import config_dir, register_schemas
    from aectl.cli.messages import one_line
    from aectl.config.checks import validate
    from aectl.config.option_fields import check_given_fields, drop_fields_of_switched_options

    register_schemas()
    GlobalHydra.instance().clear()  # an earlier compose (or a notebook's) holds the global state
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides))
        config = OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise AectlError(one_line(err)) from None
    finally:
        GlobalHydra.instance().clear()
    drop_fields_of_switched_options(config, list(overrides))
    validate(config)
    check_given_fields(config, list(overrides))
    return config
