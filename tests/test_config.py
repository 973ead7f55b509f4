import logging
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from service.cli import cli_overrides, parse_args
from service.config import LIVE_FIELDS_ELSEWHERE, Settings, load_settings
from service.serve_config import application_args, render, serve_config

ROOT = Path(__file__).parent.parent
SERVE_CONFIGS = [ROOT / "deploy" / "config" / f"{name}.yaml" for name in ("cpu", "gpu")]


def test_defaults_are_valid_and_enable_the_two_first_variants():
    s = Settings()
    assert s.models == ["hornet-t", "hornet-l-gf384"] and s.default_model_id == "hornet-t"
    assert s.weights_policy == "auto" and s.host == "127.0.0.1"


def test_yaml_then_environment_then_cli_flags(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("models: [hornet-tiny]\nport: 9000\nclassifier: {precision: bf16}\n")
    env = {"HORNET_SERVE_PORT": "9100", "HORNET_SERVE_CLASSIFIER__BATCH__MAX_BATCH_SIZE": "4", "OTHER": "x"}
    s = load_settings(path, environ=env)
    assert s.models == ["hornet-t"] and s.port == 9100
    assert s.classifier.precision == "bf16" and s.classifier.batch.max_batch_size == 4
    flags = cli_overrides(parse_args(["--port", "9200", "--models", "hornet-s,hornet-l", "--weights", "random"]))
    s = load_settings(path, flags, environ=env)
    assert (s.port, s.models, s.weights_policy) == (9200, ["hornet-s", "hornet-l"], "random")
    s = load_settings(environ={"HORNET_SERVE_CONFIG": str(path)})
    assert s.port == 9000


def test_per_model_overrides_merge_into_the_defaults():
    s = Settings.model_validate(
        {"models": ["hornet-t", "hornet-b"], "classifier": {"precision": "bf16", "batch": {"batch_wait_timeout_s": 0.02}},
         "per_model": {"hornet-base": {"batch": {"max_batch_size": 2}, "max_ongoing_requests": 4}}}
    )  # fmt: skip
    b, t = s.classifier_for("hornet-b"), s.classifier_for("hornet-t")
    assert (b.batch.max_batch_size, b.batch.batch_wait_timeout_s, b.precision) == (2, 0.02, "bf16")
    assert t.batch.max_batch_size == 8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"classifier": {"max_ongoing_requests": 4}}, "max_ongoing_requests (4) is below max_batch_size x"),
        (
            {
                "per_model": {
                    "hornet-t": {
                        "batch": {"max_batch_size": 8, "max_concurrent_batches": 3},
                        "max_ongoing_requests": 16,
                    }
                }
            },
            "8 x 3 = 24",
        ),
        ({"models": ["hornet-t", "resnet50"]}, "unknown HorNet variant 'resnet50'"),
        ({"models": ["hornet-t", "hornet-tiny"]}, "enabled twice"),
        ({"models": []}, "at least one model"),
        ({"default_model": "hornet-b"}, "not among the enabled models"),
        ({"device": "cuda"}, "reserves num_gpus=0"),
        ({"classifier": {"autoscaling": {"min_replicas": 5, "max_replicas": 2}}}, "min_replicas (5) > max_replicas"),
        ({"weights_policy": "sometimes"}, "weights_policy"),
        ({"limits": {"max_body_bytes": 10}}, "max_body_bytes"),
        ({"typo_field": 1}, "Extra inputs are not permitted"),
    ],
)
def test_inconsistent_settings_are_refused_with_a_clear_message(data, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.model_validate(data)


def test_cli_refuses_a_bad_config_at_start_up(capsys):
    from service.cli import main

    assert main(["--models", "hornet-t,nope", "--emit-serve-config"]) == 2
    assert "unknown HorNet variant 'nope'" in capsys.readouterr().err


def test_make_serve_config_is_valid():
    s = load_settings(ROOT / "deploy" / "config" / "local.yaml", environ={})
    assert s.models == ["hornet-t", "hornet-l-gf384"] and s.weights_policy == "auto"


@pytest.mark.parametrize("path", SERVE_CONFIGS, ids=lambda p: p.name)
def test_checked_in_serve_configs_are_current_and_valid(path):
    from ray.serve.schema import ServeDeploySchema

    settings = load_settings(path, environ={})
    serve_file = ROOT / "deploy" / "serve" / path.name
    expected = render(settings, f"deploy/config/{path.name}")
    assert serve_file.read_text() == expected, f"{serve_file} is stale: run `make deploy-configs`"
    parsed = yaml.safe_load(expected)
    ServeDeploySchema.model_validate(parsed)
    app = parsed["applications"][0]
    built = Settings.model_validate(app["args"], context={LIVE_FIELDS_ELSEWHERE: True})
    assert built.models == settings.models and built.limits == settings.limits
    for model_id in settings.models:  # what the args leave out, the deployments' entries carry
        entry = next(d for d in app["deployments"] if d["name"] == model_id)
        cfg = settings.classifier_for(model_id)
        assert entry["user_config"] == cfg.batch.live().model_dump()
        assert entry["max_ongoing_requests"] == cfg.max_ongoing_requests
        assert built.classifier_for(model_id).precision == cfg.precision


def test_overrides_for_a_variant_that_is_not_enabled_are_ignored_with_a_log_line(caplog):
    caplog.set_level(logging.INFO, logger="hornet-serve")
    s = load_settings(ROOT / "deploy" / "config" / "local.yaml", {"models": ["hornet-t"]}, environ={})
    assert s.models == ["hornet-t"]
    assert "per_model settings for 'hornet-l-gf384' ignored" in caplog.text


def test_live_settings_leave_the_application_args_alone_and_the_rest_changes_them():
    base = Settings.model_validate({"models": ["hornet-t", "hornet-b"]})
    live = Settings.model_validate({
        "models": ["hornet-t", "hornet-b"],
        "classifier": {"batch": {"batch_wait_timeout_s": 0.1}, "num_replicas": 3},
        "per_model": {"hornet-b": {"batch": {"max_batch_size": 4}, "max_queued_requests": 9}},
        "gateway": {"autoscaling": {"min_replicas": 1, "max_replicas": 3}},
    })  # fmt: skip
    assert application_args(live) == application_args(base)  # Serve's code version stays: no restart
    assert serve_config(live)["applications"][0]["deployments"] != serve_config(base)["applications"][0]["deployments"]
    reload = Settings.model_validate({"models": ["hornet-t", "hornet-b"], "classifier": {"precision": "fp32"}})
    assert application_args(reload) != application_args(base)


def test_required_weights_fail_before_start_up_naming_what_was_tried(tmp_path, monkeypatch, hub_dir, capsys):
    import urllib.error

    from service import cli, weights

    def offline(url):  # this machine has no route to the checkpoint host; make that explicit
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(weights, "download", offline)
    code = cli.main(["--weights", "required", "--models", "hornet-t", "--checkpoint-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3
    assert "no checkpoint for hornet-t" in err and str(tmp_path) in err and "weights_policy=required" in err
