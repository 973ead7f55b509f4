"""The try-it page in a real headless Chromium (the `browser_page` fixture, conftest.py)."""

from pathlib import Path

from tests.support.images import encode, photo

ARTIFACTS = Path(__file__).parent.parent.parent / "artifacts"


def test_page_classifies_an_uploaded_image_and_shows_five_bars(service, browser_page, tmp_path):
    page = browser_page
    image = tmp_path / "photo.jpg"
    image.write_bytes(encode(photo(480, 360, seed=42), "JPEG"))
    page.goto(service.base_url + "/")
    page.wait_for_selector("#model option", state="attached")
    options = page.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
    assert options == ["hornet-t", "hornet-l-gf384"]
    assert page.is_visible("#random-warning"), "random weights must be announced"
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#results li.pred >> nth=4", timeout=60_000)
    labels = page.eval_on_selector_all("#results .label", "els => els.map(e => e.textContent)")
    scores = page.eval_on_selector_all("#results .score", "els => els.map(e => parseFloat(e.textContent))")
    assert len(labels) == 5 and all(labels) and scores == sorted(scores, reverse=True)
    assert "ms round trip" in page.text_content("#meta")
    assert page.is_visible("#preview")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)


def test_page_explains_an_error_in_words(service, browser_page, tmp_path):
    page = browser_page
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff this is not really a jpeg")
    page.goto(service.base_url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not(.hidden)", timeout=30_000)
    assert "could not be read as an image" in page.text_content("#error")
