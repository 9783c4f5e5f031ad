"""The typed config and the CLI's error messages."""

from __future__ import annotations

import pytest

from webtext.cli import main
from webtext.core.config import BuildConfig, ConfigError, load_config


def test_uris_are_kept_as_given(tmp_path):
    (tmp_path / "build.yaml").write_text("dumps: [s3://dumps/reddit/]\nout_dir: gs://corpus/out\n")
    config = load_config(tmp_path / "build.yaml")
    assert config.dumps == ["s3://dumps/reddit/"] and config.out_dir == "gs://corpus/out"


def test_yaml_round_trip_resolves_relative_paths(tmp_path):
    (tmp_path / "build.yaml").write_text(
        "dumps: [dumps/RS_2005-06.zst]\nout_dir: out\nharvest: {min_karma: 5}\n"
        "decontaminate: {evalsets: [evals/ptb.test.txt]}\ntrain: {max_steps: 7}\n"
    )
    config = load_config(tmp_path / "build.yaml")
    assert isinstance(config, BuildConfig)
    assert config.dumps == [str(tmp_path / "dumps/RS_2005-06.zst")]
    assert config.out_dir == str(tmp_path / "out")
    assert config.decontaminate.evalsets == [str(tmp_path / "evals/ptb.test.txt")]
    assert config.harvest.min_karma == 5 and config.train.max_steps == 7
    assert config.crawl.allowed_networks == []  # private networks stay closed unless asked for


@pytest.mark.parametrize(
    "text, message",
    [
        ("harvest: {min_karma: lots}\n", "harvest.min_karma"),
        ("crawl: {timeout: 3}\n", "crawl.timeout"),
        ("- just\n- a list\n", "expected a mapping"),
        ("harvest: [\n", "cannot read config"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    assert main(["harvest", str(tmp_path / "missing.zst"), "--out", str(tmp_path / "urls.parquet")]) == 2
    err = capsys.readouterr().err
    assert "missing.zst" in err and "Traceback" not in err
    (tmp_path / "bad.yaml").write_text("nonsense_key: 1\n")
    assert main(["build", str(tmp_path / "bad.yaml")]) == 2
    assert "nonsense_key" in capsys.readouterr().err


def test_decontaminate_requires_an_evalset(tmp_path, capsys):
    assert main(["decontaminate", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "--evalset" in capsys.readouterr().err
