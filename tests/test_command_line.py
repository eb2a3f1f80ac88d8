"""The checks of a command line before Hydra reads it: what a config group cannot take, a key that
names no setting, a value of the wrong type, and a launcher or sweeper whose plugin is missing, each
refused in one line with what to write or install instead."""

from __future__ import annotations

import re

import pytest

from vae_gumbel.command_line import check_command_line, check_group_choices, check_plugins
from vae_gumbel.errors import ConfigError


@pytest.mark.parametrize(
    ("overrides", "config_name", "says"),
    [
        (
            ["temperature=0.5"],
            "train",
            re.escape(
                "temperature=0.5: temperature is a config group, which takes the name of one of its files "
                "(constant, exp_anneal, learned); to set its keys (initial, min, rate, every), write them "
                "one by one, e.g. temperature.initial=0.5"
            ),
        ),
        (["-m", "seed=0,1", "estimator=reinmax,true"], "train", "estimator=true: estimator is a"),
        (["data=range(1,3)"], "train", "data=1: data is a config group"),
        (["debug=null"], "train", r"debug=null: .* files \(smoke, tiny\); ~debug leaves it out"),
        (["temperature=0.5"], "sample", "sample has no setting temperature; .* --help lists them"),
        (["data=1"], "evaluate", r"data holds settings \(root, test_limit\); set them one by one"),
        (
            ["temperature={initial:0.5,min:0.1}"],
            "train",
            "write them one by one, e.g. temperature.initial=0.5 temperature.min=0.1$",
        ),
    ],
)
def test_a_number_or_null_for_a_config_group_is_refused_with_what_to_write_instead(
    overrides: list[str], config_name: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        check_group_choices(overrides, config_name)


def test_choices_keys_and_values_that_a_run_can_take_pass_every_check() -> None:
    check_command_line(
        [
            "--cfg",
            "job",
            "temperature=constant",
            "temperature.initial=0.5",
            "estimator=choice(reinmax,gumbel_rao)",
            "temperature=glob(*)",
            "optim.lr=interval(1e-4,1e-2)",
            "~debug",
            "experiment=jang2017",
            "hydra.run.dir=outputs/run",
            "hydra/launcher=stacked",
            "seed=0,1",
            "++optim.lr=3e-4",
            "model.hidden=[256,128]",
            "trainer.num_threads=null",
            "data.train_limit=${oc.env:LIMIT,100}",
            "eval.final_iwae_samples=[1,100]",
        ],
        "train",
    )
    check_command_line(["checkpoint=outputs/run", "rows=4", "data.root=/data"], "sample")
    check_command_line(["checkpoint=outputs/run", "iwae_samples=[1,10]", "split=test"], "evaluate")


@pytest.mark.parametrize(
    ("overrides", "config_name", "says"),
    [
        (
            ["optim.lrr=1e-3"],
            "train",
            "optim.lrr is not a setting of train (did you mean optim.lr?); "
            "optim has: name, lr, betas, eps, weight_decay",
        ),
        # Hydra itself would add the key, and the run would train without ever reading it.
        (["+data.dataset=cifar"], "train", "data.dataset is not a setting of train; data has: name, root, "),
        (
            ["-m", "seed=0,1", "epochs=20"],
            "train",
            "epochs is not a setting of train (did you mean trainer.epochs?); train has: data.*, model.*, "
            "estimator.*, objective.*, temperature.*, optim.*, trainer.*, eval.*, seed, resume, "
            "resume_weights_only",
        ),
        (["~optim.epss"], "train", "optim.epss is not a setting of train (did you mean optim.eps?)"),
        (
            ["temperature.minimum=0.5"],
            "train",
            "temperature.minimum is not a setting of train; temperature has:",
        ),
        (["rowz=4"], "sample", "rowz is not a setting of sample (did you mean rows?)"),
        # The grid decides how many test images sample reads; a limit would have been ignored.
        (["data.test_limit=3"], "sample", "data.test_limit is not a setting of sample; data has: root"),
        (["samples=4"], "evaluate", "samples is not a setting of evaluate (did you mean iwae_samples?)"),
        (
            ["ks=[1,10]"],
            "evaluate",
            "ks is not a setting of evaluate; evaluate has: checkpoint, which, iwae_samples, batch_size, "
            "max_rows, seed, device, out, progress, data.*, split",
        ),
        (["data.nope.deeper=1"], "sample", "data.nope.deeper is not a setting of sample; data has: root"),
        (["nope.deeper=1"], "sample", "nope.deeper is not a setting of sample; sample has: checkpoint, "),
    ],
)
def test_a_key_that_names_no_setting_is_refused_with_the_setting_it_most_likely_meant(
    overrides: list[str], config_name: str, says: str
) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(says)):
        check_command_line(overrides, config_name)


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("optim.lr=abc", "optim.lr=abc: Value 'abc' of type 'str' could not be converted to Float"),
        ("optim.lr=1e-3,abc", "optim.lr=abc: Value 'abc'"),  # each value of a sweep
        ("seed=1.5", "seed=1.5: Value '1.5' of type 'float' could not be converted to Integer"),
        ("trainer.tf32=maybe", "trainer.tf32=maybe: Value 'maybe' is not a valid bool"),
        ("optim.betas=[0.9,x]", "optim.betas=[0.9,x]: Value 'x' of type 'str' could not be converted"),
        (
            "eval.final_iwae_samples=5000",
            "eval.final_iwae_samples=5000: eval.final_iwae_samples takes a list, in brackets, "
            "e.g. eval.final_iwae_samples=[5000]",
        ),
        ("model.hidden=512,256", "model.hidden=512: model.hidden takes a list, in brackets, e.g. model.hid"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_in_one_line(override: str, says: str) -> None:
    for arguments in ([override], ["-m", override]) if "," not in override else (["-m", override],):
        with pytest.raises(ConfigError, match="^" + re.escape(says)):
            check_command_line(arguments, "train")


def test_a_group_choice_without_a_file_lists_the_groups_files_unless_the_user_adds_config_folders() -> None:
    says = (
        "estimator=reinforce: estimator has no config reinforce; choose one of: decoupled_straight_through, "
    )
    with pytest.raises(ConfigError, match="^" + re.escape(says)):
        check_command_line(["estimator=gumbel_softmax,reinforce"], "train")
    with pytest.raises(ConfigError, match="^experiment=mine: experiment has no config mine"):
        check_command_line(["experiment=mine"], "train")
    # The user's own config folders may hold more choices, groups of their own and another primary
    # config: Hydra looks there, and these checks leave the names to it.
    for folders in (
        ["--config-dir", "my_conf"],
        ["-cd=my_conf"],
        ["--config-path=/home/me/conf"],
        ["--config-name=mine"],
        ["hydra.searchpath=[file://my_conf]"],
    ):
        check_command_line([*folders, "experiment=mine", "+sweeps=big"], "train")


def test_a_plus_before_a_group_of_the_defaults_says_to_write_it_without() -> None:
    # Hydra's own answer gives the defaults-list syntax of a YAML file: "use 'override estimator: reinmax'",
    # for an optional group (experiment: null in train.yaml) too.
    for typed, group, default in (
        ("+estimator=reinmax", "estimator", "gumbel_softmax"),
        ("+estimator=reinmax,gumbel_rao", "estimator", "gumbel_softmax"),
        ("+experiment=jang2017", "experiment", "none"),
    ):
        says = f"{typed}: {group} is already in train's defaults ({default} by default); write {typed[1:]}"
        with pytest.raises(ConfigError, match="^" + re.escape(says) + " to choose$"):
            check_command_line(["-m", typed], "train")


def test_two_of_hydras_modes_at_once_or_resolve_without_cfg_are_one_line_that_says_what_to_do() -> None:
    says = "--multirun and --cfg do not go together: Hydra does one of --run, --multirun, --cfg,"
    for arguments in (["-m", "seed=0,1", "--cfg", "job"], ["--cfg=job", "--multirun"]):
        with pytest.raises(
            ConfigError, match="^" + re.escape(says) + ".*leave out --multirun to see one job's config$"
        ):
            check_command_line(arguments, "train")
    with pytest.raises(ConfigError, match="^--multirun and --info do not go together"):
        check_command_line(["-m", "--info"], "train")
    with pytest.raises(ConfigError, match=r"^--resolve goes with --cfg \(or --help\): --cfg job --resolve"):
        check_command_line(["--resolve", "seed=1"], "train")
    with pytest.raises(ConfigError, match=r"^--experimental-rerun is not supported: .* resume=last$"):
        check_command_line(["--experimental-rerun", "RUN/.hydra/config.pickle"], "train")
    for one in (["--cfg", "job", "--resolve"], ["-m", "seed=0,1"], ["--info", "searchpath"], ["--cfg"]):
        check_command_line(one, "train")  # one mode, or a flag that Hydra itself answers


def test_shell_completion_takes_its_subcommand_instead_of_settings_and_says_when_it_has_none() -> None:
    for subcommand in (
        ["-sc", "install=bash"],
        ["--shell-completion", "query=bash"],
        ["-sc", "uninstall=fish"],
    ):
        check_command_line(subcommand, "train")  # Hydra's own, not a setting of train
    says = r"^--shell-completion takes one of install=SHELL, uninstall=SHELL, query=SHELL, got "
    with pytest.raises(ConfigError, match=says + "none: -sc install=bash prints what to add to ~/.bashrc$"):
        check_command_line(["-sc"], "train")
    with pytest.raises(ConfigError, match=says + "install and query"):
        check_command_line(["-sc", "install=bash", "query=bash"], "train")
    with pytest.raises(
        ConfigError, match=r"^install=tcsh: Hydra completes the command line in bash, fish, zsh$"
    ):
        check_command_line(["-sc", "install=tcsh"], "train")


@pytest.mark.parametrize(
    ("word", "config_name", "says"),
    [
        ("outputs/2026-12-04/10-00-00-1", "sample", "write checkpoint=outputs/2026-12-04/10-00-00-1$"),
        ("best.pt", "evaluate", "write checkpoint=best.pt$"),
        ("outputs/run", "train", "write resume=outputs/run$"),
        ("seed", "train", r" \(seed=1\), or ~KEY to remove one; --help lists train's settings$"),
    ],
)
def test_a_word_without_key_names_the_setting_a_path_was_meant_for(
    word: str, config_name: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(word)}: settings are written KEY=VALUE.*{says}"):
        check_command_line(["trainer.epochs=1", word] if config_name == "train" else [word], config_name)
    check_command_line(
        ["~debug", "--config-dir", "my/configs", "-cn", "train"], "train"
    )  # a flag's own value


@pytest.mark.parametrize(
    ("arguments", "folder"),
    [
        (["resume=last"], "hydra.run.dir"),
        (["resume=last", "hydra.sweep.dir=outputs/sweep"], "hydra.run.dir"),
        (["-m", "seed=0,1", "resume=last", "hydra.run.dir=outputs/run"], "hydra.sweep.dir"),
        (["hparams_search=best_bound", "resume=last"], "hydra.sweep.dir"),
        (["hparams_search=optuna", "hydra.mode=RUN", "resume=last"], "hydra.run.dir"),
    ],
    ids=["a run", "a run given a sweep's folder", "a sweep given a run's folder", "a search", "a trial"],
)
def test_resume_last_without_the_folder_it_would_continue_is_refused(
    arguments: list[str], folder: str
) -> None:
    """Without it, the command's folder is a new one, named by the date and time: resume=last
    would find nothing there and start afresh, while its user thinks the run went on."""
    with pytest.raises(
        ConfigError, match=rf"^resume=last continues .* without {folder} that folder is a new one"
    ):
        check_command_line(arguments, "train")
    check_command_line([*arguments, f"{folder}=outputs/mine"], "train")


def test_resume_last_into_a_given_folder_or_resume_from_a_checkpoint_passes() -> None:
    check_command_line(["resume=last", "hydra.run.dir=outputs/run"], "train")
    check_command_line(["-m", "seed=0,1", "resume=last", "hydra.sweep.dir=outputs/sweep"], "train")
    check_command_line(["resume=outputs/run", "trainer.epochs=20"], "train")
    check_command_line(["--cfg", "job", "resume=last"], "train")  # prints a config; continues nothing


@pytest.mark.parametrize(
    ("arguments", "config_name", "says"),
    [
        (["--epochs", "10", "seed=1"], "train", "--epochs: .*; write trainer.epochs=10 "),
        (["--epochs=10"], "train", "--epochs=10: .*; write trainer.epochs=10 "),
        (["--batch-size", "64"], "train", "--batch-size: .*; write data.batch_size=64 "),
        (["-m", "--lr", "1e-3"], "train", "--lr: .*; write optim.lr=1e-3 "),
        (["--iwae-samples", "100"], "evaluate", r"--iwae-samples: .*; write iwae_samples=\[100\] "),
        (["--checkpoint", "outputs/run"], "sample", "--checkpoint: .*; write checkpoint=outputs/run "),
        (["--seed"], "train", "--seed: .*; write seed=VALUE "),
        (["--frobnicate", "3"], "train", r"--frobnicate: [^;]* \(--help"),
    ],
    ids=["value after", "value joined", "dashes", "in a sweep", "a list", "sample", "no value", "unknown"],
)
def test_a_flag_that_no_command_takes_is_answered_with_the_setting_it_meant(
    arguments: list[str], config_name: str, says: str
) -> None:
    """Scripts that read their settings with argparse are called with flags; these commands take
    Hydra's KEY=VALUE, and Hydra would print its usage, or take the flag's value for an override."""
    with pytest.raises(ConfigError, match=f"^{says}") as refused:
        check_command_line(arguments, config_name)
    assert f"{config_name} takes its settings as KEY=VALUE, not as flags" in str(refused.value)
    assert str(refused.value).endswith(f"(--help lists {config_name}'s settings)")


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("optim.lr=(1e-3", r"\(extraneous input '\('\); quote a value"),
        ("model.hidden=[512,", r"\(no viable alternative at input '\[512,'\)"),
        ('data.root="data', r"""\('"' at character 11 stops it\); quote a value .*override_grammar"""),
        ("optim.=3", r"\('\.' at character 6 stops it\)"),
        # Unquoted, Hydra reads ASCII only: a folder's name in another script needs quotes.
        (
            "hydra.run.dir=runs/über",
            r"\('ü' at character 20 stops it\); quote a value that holds anything but ASCII",
        ),
    ],
)
def test_an_override_hydras_grammar_cannot_read_is_one_line_that_says_where_it_stops(
    override: str, says: str
) -> None:
    refusal = f"^{re.escape(override)}: Hydra cannot read this override {says}"
    with pytest.raises(ConfigError, match=refusal) as refused:
        check_command_line(["trainer.epochs=1", override], "train")
    assert "\n" not in str(refused.value) and "expecting" not in str(refused.value)


def test_a_tilde_the_shell_left_in_a_path_is_answered_with_home() -> None:
    says = (
        "hydra.run.dir=~/runs/a: Hydra reads ~ only before a key (~KEY removes it) and does not "
        "expand it to your home folder; write hydra.run.dir=$HOME/runs/a"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(says)}$"):
        check_command_line(["hydra.run.dir=~/runs/a"], "train")
    with pytest.raises(ConfigError, match=r"^data.root=runs/~a: Hydra cannot read .* \('~' at character 16"):
        check_command_line(["data.root=runs/~a"], "train")  # no home folder there
    check_command_line(["~debug", "trainer.epochs=1"], "train")  # ~KEY removes a key


def test_a_launcher_or_sweeper_setting_it_lacks_is_one_line_with_the_settings_it_has() -> None:
    says = (
        "hydra.launcher.max_memebers is not a setting of the stacked launcher (did you mean "
        "hydra.launcher.max_members?); it has: max_members"
    )
    typo = ["-m", "hydra/launcher=stacked", "seed=0,1", "hydra.launcher.max_memebers=8"]
    with pytest.raises(ConfigError, match=f"^{re.escape(says)}$"):
        check_command_line(typo, "train")
    # hparams_search=best_bound chooses the stacked launcher itself.
    with pytest.raises(ConfigError, match="^hydra.launcher.max_member is not a setting of the stacked"):
        check_command_line(["hparams_search=best_bound", "hydra.launcher.max_member=4"], "train")
    with pytest.raises(
        ConfigError,
        match=r"^hydra.launcher.n_jobs: the basic launcher has no settings; choose the launcher that "
        r"has it with hydra/launcher=NAME \(basic, .*stacked",
    ):
        check_command_line(["-m", "seed=0,1", "hydra.launcher.n_jobs=2"], "train")
    swept = ["hparams_search=optuna", "hydra.sweeper.params.optim.lrr=interval(1e-4,1e-2)"]
    with pytest.raises(
        ConfigError,
        match=r"^hydra.sweeper.params.optim.lrr: optim.lrr is not a setting of train \(did you mean optim.lr",
    ):
        check_command_line(swept, "train")
    for fine in (
        ["-m", "hydra.sweeper.params.seed=0,1", "hydra.sweeper.params.estimator=reinmax,gumbel_softmax"],
        ["-m", "hydra/launcher=stacked", "hydra.launcher.max_members=8", "seed=0,1"],
        ["-m", "seed=0,1", "hydra.sweeper.max_batch_size=4"],
        ["-m", "hydra/launcher=stacked,basic", "hydra.launcher.max_members=8"],  # Hydra checks each
    ):
        check_command_line(fine, "train")


def test_a_sweep_without_multirun_says_to_add_it_or_names_the_list_it_may_have_meant() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("seed=0,1: a sweep needs -m (--multirun), which runs one job ")
    ):
        check_command_line(["seed=0,1"], "train")
    with pytest.raises(
        ConfigError, match=re.escape("one job per value, or write iwae_samples=[1,10] for a list")
    ):
        check_command_line(["checkpoint=x", "iwae_samples=1,10"], "evaluate")
    with pytest.raises(
        ConfigError, match=r"^seed=range\(0,3\): a sweep needs -m \(--multirun\), .* per value$"
    ):
        check_command_line(["seed=range(0,3)"], "train")
    for multirun in (
        ["-m", "seed=0,1"],
        ["hparams_search=best_bound", "seed=0,1"],
        ["hydra.mode=MULTIRUN", "seed=0,1"],
    ):
        check_command_line(multirun, "train")
    check_command_line(["seed=0,1", "--config-dir", "mine"], "train")  # the user's configs may set hydra.mode


def test_a_launcher_or_sweeper_that_no_config_provides_is_one_line_with_the_ones_there() -> None:
    says = "hydra/launcher=stacke: hydra/launcher has no config stacke; choose one of: basic, "
    with pytest.raises(ConfigError, match="^" + re.escape(says) + ".*stacked, stacked_slurm"):
        check_command_line(["-m", "hydra/launcher=stacke", "seed=0,1"], "train")
    with pytest.raises(ConfigError, match="^hydra/sweeper=optun: .*; choose one of: basic"):
        check_command_line(["-m", "hydra/sweeper=basic,optun"], "train")
    check_command_line(["-m", "hydra/launcher=stacked", "hydra/sweeper=basic"], "train")
    check_command_line(["--config-dir", "mine", "-m", "hydra/launcher=my_own"], "train")  # theirs to check


def test_a_launcher_that_another_installed_plugin_provides_is_let_through() -> None:
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="hydra/launcher", name="elsewhere", node={"_target_": "some.Launcher"})
    try:
        check_command_line(["-m", "hydra/launcher=elsewhere"], "train")
    finally:
        del store.repo["hydra"]["launcher"]["elsewhere.yaml"]


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["hydra/launcher=joblib"], "hydra/launcher=joblib needs Hydra's plugin hydra-joblib-launcher"),
        (["-m", "hparams_search=optuna"], "hparams_search=optuna needs Hydra's plugin hydra-optuna-sweeper"),
        (["hydra/launcher=stacked,stacked_slurm"], "stacked_slurm needs Hydra's plugin hydra-submitit"),
    ],
)
def test_a_launcher_or_sweeper_whose_plugin_is_missing_says_how_to_install_it(
    overrides: list[str], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    installed = importlib.util.find_spec

    def without_hydras_plugins(name: str):
        return None if name.startswith("hydra_plugins.hydra_") else installed(name)

    monkeypatch.setattr(importlib.util, "find_spec", without_hydras_plugins)
    installs = re.escape("which is not installed: pip install 'vae-gumbel[sweep]' adds it")
    with pytest.raises(ConfigError, match=re.escape(says) + ".*" + installs + ".*pip install hydra-"):
        check_plugins(overrides)
    check_plugins(["hydra/launcher=stacked", "hparams_search=best_bound"])  # ours, always there
