import logging
import re

import pytest
import yaml
from pydantic import ValidationError

from service.config import LIVE_FIELDS_ELSEWHERE, Settings, load_settings
from service.daemon.server import cli_overrides, parse_args
from service.serve_config import application_args, render, serve_config
from tests.support import ROOT

SERVE_CONFIGS = [ROOT / "deploy" / "config" / f"{name}.yaml" for name in ("cpu", "gpu")]


def test_defaults_are_valid_and_enable_the_two_first_variants():
    s = Settings()
    assert s.models == ["hornet-t", "hornet-l-gf384"] and s.default_model_id == "hornet-t"
    assert s.weights_policy == "auto" and s.host == "127.0.0.1"


@pytest.fixture
def yaml_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "models: [hornet-tiny]\nport: 9000\nclassifier: {precision: bf16, batch: {batch_wait_timeout_s: 0.05}}\n"
    )
    return path


def test_without_sources_the_defaults_hold_and_the_result_is_a_plain_settings():
    assert load_settings(environ={"OTHER": "x"}) == Settings()


def test_the_yaml_file_overrides_the_defaults(yaml_file):
    s = load_settings(yaml_file, environ={})
    assert (s.models, s.port, s.classifier.precision, s.host) == (["hornet-t"], 9000, "bf16", "127.0.0.1")


def test_hornet_serve_config_names_the_yaml_file_unless_a_path_is_given(yaml_file, tmp_path):
    assert load_settings(environ={"HORNET_SERVE_CONFIG": str(yaml_file)}).port == 9000
    other = tmp_path / "other.yaml"
    other.write_text("port: 9001\n")
    assert load_settings(other, environ={"HORNET_SERVE_CONFIG": str(yaml_file)}).port == 9001


def test_the_environment_overrides_the_yaml_file(yaml_file):
    s = load_settings(yaml_file, environ={"HORNET_SERVE_PORT": "9100", "OTHER": "x"})
    assert (s.port, s.classifier.precision) == (9100, "bf16")


def test_cli_flags_override_the_environment(yaml_file):
    env = {"HORNET_SERVE_PORT": "9100", "HORNET_SERVE_WEIGHTS_POLICY": "required"}
    flags = cli_overrides(parse_args(["--port", "9200", "--models", "hornet-s,hornet-l", "--weights", "random"]))
    s = load_settings(yaml_file, flags, environ=env)
    assert (s.port, s.models, s.weights_policy) == (9200, ["hornet-s", "hornet-l"], "random")


def test_double_underscores_nest_and_merge_with_the_yaml_file(yaml_file):
    env = {"HORNET_SERVE_CLASSIFIER__BATCH__MAX_BATCH_SIZE": "4", "HORNET_SERVE_AUTH__RATE_PER_S": "null"}
    s = load_settings(yaml_file, environ=env)
    assert (s.classifier.batch.max_batch_size, s.classifier.batch.batch_wait_timeout_s) == (4, 0.05)
    assert (s.classifier.precision, s.auth.rate_per_s) == ("bf16", None)


@pytest.mark.parametrize("value", ["[hornet-t, hornet-b]", '["hornet-t", "hornet-b"]', "- hornet-t\n- hornet-b"])
def test_list_values_are_yaml(value):
    assert load_settings(environ={"HORNET_SERVE_MODELS": value}).models == ["hornet-t", "hornet-b"]


def test_a_value_that_is_not_yaml_is_refused_naming_the_field():
    with pytest.raises(ValueError, match='field "models"'):
        load_settings(environ={"HORNET_SERVE_MODELS": "[hornet-t"})


@pytest.mark.parametrize(
    ("env", "yaml_text", "path"),
    [
        ({"HORNET_SERVE_CLASSIFIER__BATCHX": "1"}, "", "classifier.batchx"),
        ({"HORNET_SERVE_PROT": "9000"}, "", "prot"),
        ({}, "classifier: {precison: bf16}\n", "classifier.precison"),
        ({}, "prot: 9000\n", "prot"),
    ],
)
def test_unknown_keys_are_refused_with_their_path(tmp_path, env, yaml_text, path):
    settings_file = tmp_path / "s.yaml"
    settings_file.write_text(yaml_text)
    with pytest.raises(ValidationError, match=rf"\n{re.escape(path)}\n  Extra inputs are not permitted"):
        load_settings(settings_file, environ=env)


def test_per_model_settings_from_the_environment():
    env = {
        "HORNET_SERVE_MODELS": "[hornet-t, hornet-b]",
        "HORNET_SERVE_PER_MODEL": "{hornet-b: {batch: {max_batch_size: 4}}}",
        "HORNET_SERVE_PER_MODEL__HORNET-B__MAX_QUEUED_REQUESTS": "9",  # names with `-`: env(1), Kubernetes
    }
    s = load_settings(environ=env)
    b, t = s.classifier_for("hornet-b"), s.classifier_for("hornet-t")
    assert (b.batch.max_batch_size, b.max_queued_requests) == (4, 9)
    assert (t.batch.max_batch_size, t.max_queued_requests) == (8, 64)


def test_only_load_settings_reads_the_environment_and_only_the_one_it_is_given(monkeypatch):
    monkeypatch.setenv("HORNET_SERVE_PORT", "9300")
    assert load_settings(environ={}).port == 8000
    assert Settings.model_validate({}, context={LIVE_FIELDS_ELSEWHERE: True}).port == 8000  # service.app's path
    assert load_settings().port == 9300


def test_per_model_overrides_merge_into_the_defaults():
    s = Settings.model_validate(
        {"models": ["hornet-t", "hornet-b"], "classifier": {"precision": "bf16", "batch": {"batch_wait_timeout_s": 0.02}},
         "per_model": {"hornet-base": {"batch": {"max_batch_size": 2}, "max_ongoing_requests": 4}}}
    )  # fmt: skip
    b, t = s.classifier_for("hornet-b"), s.classifier_for("hornet-t")
    assert (b.batch.max_batch_size, b.batch.batch_wait_timeout_s, b.precision) == (2, 0.02, "bf16")
    assert t.batch.max_batch_size == 8


def test_a_variants_resources_replace_the_common_ones_so_it_can_run_on_another_group():
    s = Settings.model_validate(
        {"models": ["hornet-t", "hornet-b"], "classifier": {"resources": {"on_demand_node": 0.01}},
         "per_model": {"hornet-t": {"resources": {"warm_node": 0.01}}}}
    )  # fmt: skip
    assert s.classifier_for("hornet-t").resources == {"warm_node": 0.01}
    assert s.classifier_for("hornet-b").resources == {"on_demand_node": 0.01}


def test_scale_to_zero_settings_reach_serves_autoscaling_config():
    from ray.serve.config import AutoscalingConfig

    from service.serve_config import classifier_deployment

    autoscaling = {"min_replicas": 0, "max_replicas": 2, "initial_replicas": 1, "downscale_to_zero_delay_s": 5}
    s = Settings.model_validate({"models": ["hornet-t"], "classifier": {"autoscaling": autoscaling}})
    config = classifier_deployment("hornet-t", s)["autoscaling_config"]
    assert AutoscalingConfig.model_validate(config).downscale_to_zero_delay_s == 5 and "num_replicas" not in config
    unset = Settings.model_validate({"models": ["hornet-t"], "classifier": {"autoscaling": {"min_replicas": 0}}})
    assert "initial_replicas" not in classifier_deployment("hornet-t", unset)["autoscaling_config"]  # Serve's default


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
        (
            {"classifier": {"autoscaling": {"min_replicas": 1, "initial_replicas": 0}}},
            "initial_replicas (0) is outside",
        ),
        (
            {"classifier": {"autoscaling": {"min_replicas": 0, "downscale_to_zero_delay_s": -1}}},
            "greater than or equal",
        ),
        ({"weights_policy": "sometimes"}, "weights_policy"),
        ({"limits": {"max_body_bytes": 10}}, "max_body_bytes"),
        ({"typo_field": 1}, "Extra inputs are not permitted"),
        ({"port": 9000, "grpc_port": 9000}, "grpc_port and port are both 9000"),
    ],
)
def test_inconsistent_settings_are_refused_with_a_clear_message(data, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.model_validate(data)


def test_cli_refuses_a_bad_config_at_start_up(capsys):
    from service.daemon.server import main

    assert main(["--models", "hornet-t,nope", "--emit-serve-config"]) == 2
    assert "unknown HorNet variant 'nope'" in capsys.readouterr().err


def test_grpc_options_add_kserves_service_where_serve_loads_it_and_grpc_port_0_leaves_them_out():
    from ray.serve.config import gRPCOptions

    settings = load_settings(None, cli_overrides(parse_args(["--grpc-port", "9001"])), environ={})
    options = gRPCOptions(**serve_config(settings)["grpc_options"])
    assert options.port == 9001 and not options.enable_reflection
    (add_service,) = options.grpc_servicer_func_callable  # Serve's own import of the path
    assert add_service.__name__ == "add_GRPCInferenceServiceServicer_to_server"
    assert "grpc_options" not in serve_config(Settings(grpc_port=0))


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
    base = Settings.model_validate({"models": ["hornet-t", "hornet-b"], "topology": "split"})
    live = Settings.model_validate({
        "models": ["hornet-t", "hornet-b"], "topology": "split",
        "classifier": {"batch": {"batch_wait_timeout_s": 0.1}, "num_replicas": 3},
        "per_model": {"hornet-b": {"batch": {"max_batch_size": 4}, "max_queued_requests": 9}},
        "gateway": {"autoscaling": {"min_replicas": 1, "max_replicas": 3}},
    })  # fmt: skip
    assert application_args(live) == application_args(base)  # Serve's code version stays: no restart
    assert serve_config(live)["applications"][0]["deployments"] != serve_config(base)["applications"][0]["deployments"]
    reload = Settings.model_validate(
        {"models": ["hornet-t", "hornet-b"], "topology": "split", "classifier": {"precision": "fp32"}}
    )
    assert application_args(reload) != application_args(base)


def test_required_weights_fail_before_start_up_naming_what_was_tried(tmp_path, monkeypatch, hub_dir, capsys):
    import urllib.error

    from service.daemon import server
    from service.replica import weights

    def offline(url):  # this machine has no route to the checkpoint host; make that explicit
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(weights, "download", offline)
    code = server.main(["--weights", "required", "--models", "hornet-t", "--checkpoint-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3
    assert "no checkpoint for hornet-t" in err and str(tmp_path) in err and "weights_policy=required" in err
