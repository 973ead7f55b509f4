"""The replica's fixed-shape fast path on the CPU: buckets and padding, staging buffers, torch.compile."""

import threading

import numpy as np
import pytest
import torch

import model
from model.buckets import StagingPool, bucket_for, check_buckets
from tests.support.nets import narrow_hornet

RECIPE = model.get_variant("hornet-t").preprocessing


@pytest.fixture(scope="module")
def net():
    return narrow_hornet()


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)


def test_bucket_choice_and_validation():
    assert [bucket_for(n, [1, 2, 4, 8]) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    assert bucket_for(5, None) == 5
    assert check_buckets([8, 2, 2, 4]) == [2, 4, 8]
    with pytest.raises(ValueError, match="largest bucket"):
        bucket_for(9, [4, 8])
    with pytest.raises(ValueError, match="positive"):
        check_buckets([0, 4])


def test_padded_batches_give_the_unpadded_results(net):
    exact = model.BatchPredictor(net, RECIPE)
    bucketed = model.BatchPredictor(net, RECIPE, buckets=[1, 2, 4, 8])
    for seed, n in enumerate([8, 3, 5, 1, 11]):  # 11: chunked into 8 + a 3 padded to 4; stale rows in the pad
        images = _images(n, seed)
        expected_idx, expected_scores = exact.predict(images, top_k=3)
        idx, scores = bucketed.predict(images, top_k=3)
        assert idx.shape == scores.shape == (n, 3)
        assert (idx == expected_idx).all()
        np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    assert set(bucketed.runner_kinds) == {1, 4, 8} and set(bucketed.runner_kinds.values()) == {"eager"}


def test_staging_buffers_are_reused_and_never_shared_between_concurrent_batches(net):
    predictor = model.BatchPredictor(net, RECIPE, buckets=[2, 4])
    images = [_images(3, seed) for seed in range(4)]
    expected = [predictor.predict(x)[0] for x in images]
    for x in images:
        predictor.predict(x)
    assert predictor._staging.allocated == 1, "sequential batches must reuse one staging buffer"
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(images))

    def run(i: int) -> None:
        start.wait()
        results[i] = predictor.predict(images[i])[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all((results[i] == expected[i]).all() for i in range(len(images)))
    assert 1 <= predictor._staging.allocated <= len(images)


def test_staging_pool_hands_each_taker_its_own_buffer():
    pool = StagingPool((4, 4, 3), pin_memory=False)
    with pool.take(2) as a, pool.take(2) as b:
        assert a.shape == (2, 4, 4, 3) and a.dtype == torch.uint8
        assert a.data_ptr() != b.data_ptr()
    with pool.take(2) as c:
        assert c.data_ptr() in (a.data_ptr(), b.data_ptr())
    assert pool.allocated == 2


def test_bad_inputs_and_options_are_refused(net):
    predictor = model.BatchPredictor(net, RECIPE, buckets=[2])
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((1, 224, 224, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="CUDA device"):
        model.BatchPredictor(net, RECIPE, cuda_graphs=True)
    with pytest.raises(ValueError, match="batch sizes"):
        model.BatchPredictor(net, RECIPE).warmup()


def _small_hornet() -> model.HorNet:
    """A HorNet of the model's own blocks, cut to one block: compiles in seconds where hornet-t takes minutes."""
    net = model.HorNet(model.HorNetConfig(base_dim=16, num_classes=10))
    net.stages[0] = net.stages[0][:1]
    for i in range(1, 4):
        net.stages[i] = net.stages[i][:0]
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return net.eval()


@pytest.mark.slow  # torch.compile: seconds even for one block
def test_compiled_predictor_matches_eager_and_is_warmed_per_bucket():
    net = _small_hornet()
    eager = model.BatchPredictor(net, RECIPE)
    compiled = model.BatchPredictor(net, RECIPE, buckets=[2], compile="default", max_top_k=5)
    compiled.warmup()
    assert compiled.runner_kinds == {2: "compiled"}
    for n in (1, 2):
        images = _images(n, n)
        idx, scores = compiled.predict(images, top_k=5)
        expected_idx, expected_scores = eager.predict(images, top_k=5)
        assert (idx == expected_idx).all()
        np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    assert compiled.predict(_images(1, 9), top_k=2)[0].shape == (1, 2)
    with pytest.raises(ValueError, match="max_top_k"):
        compiled.predict(_images(1, 0), top_k=6)
