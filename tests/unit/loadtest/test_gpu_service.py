"""The prepared GPU service check's settings and report, on this machine (its CPU dry run is in the docs)."""

from __future__ import annotations

from loadtest.gpu_service import service_settings, write


def test_the_services_are_deploy_gpu_yaml_on_one_machine():
    for decode in ("gateway", "replica"):
        settings = service_settings(decode, quick=False)
        assert settings.models == ["hornet-t", "hornet-l-gf384"] and settings.device == "cuda"
        assert settings.weights_policy == "random" and not settings.auth.enabled
        for model in settings.models:
            variant = settings.variant(model)
            assert variant.classifier.decode == decode and variant.classifier.compile == "off"
            assert not variant.classifier.resources and variant.classifier.autoscaling is None
        assert settings.variant("hornet-l-gf384").classifier.batch.max_batch_size == 16  # gpu.yaml's per-model batch
        assert settings.gateway.num_replicas == 3 and not settings.gateway.resources
    quick = service_settings("replica", quick=True)
    assert (quick.models, quick.device) == (["hornet-t"], "cpu")


def test_the_table_gives_each_window_against_the_model_alone(tmp_path):
    row = {"decode": "replica", "model": "hornet-t", "image": "1024x768", "concurrency": 64, "images_per_s": 3000.0,
           "p50_ms": 20.0, "p99_ms": 45.0, "errors": 0, "gpu_util_pct": 71.5}  # fmt: skip
    report = {"machine": {"gpu": "H200"}, "model_only": [{"model": "hornet-t", "images_per_s": 4000.0}],
              "rows": [row], "skipped": [{"decode": "replica", "model": "hornet-t", "concurrency": 256}]}  # fmt: skip
    write(report, tmp_path)
    table = (tmp_path / "gpu_service.md").read_text()
    assert "| replica | hornet-t | 1024x768 | 64 | 3000 | 0.75 | 20 | 45 | 0 | 72 |" in table
    assert "Skipped past the budget" in table and (tmp_path / "gpu_service.json").exists()
