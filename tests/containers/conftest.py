from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from tests.containers.stack import Stack, ensure_base_images, volumes, write_inputs


@pytest.fixture(scope="session")
def volumes_before() -> set[str]:
    return volumes()


@pytest.fixture(scope="session")
def stack(volumes_before: set[str]) -> Iterator[Stack]:
    """The image built (no index: the wheelhouse), the head and Prometheus up and the head healthy; removed after."""
    ensure_base_images()
    stack = Stack.on_free_ports(write_inputs())
    stack.compose("build", "ray-head", timeout=1800)
    try:
        stack.compose("up", "-d", "ray-head", "prometheus")
        stack.wait_healthy("ray-head", timeout_s=420)
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans")


@pytest.fixture(scope="session")
def coffee_jpeg() -> bytes:
    """A real photo (scikit-image's sample data, 600x400)."""
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.coffee()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
