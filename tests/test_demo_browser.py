"""The demo's page in a real headless browser (the system's Chromium, through Selenium): each view opened, a
batch typed, p moved to 0 and a diagonal of 1.00 read, a search run and its top hit read, a run folder loaded
and its curve found, two models compared. One server (`python demo.py`, the packaged MiniLM) and one browser
for the module. Without Chromium the test skips, except under SIMCSE_REQUIRE_DATA=1 (CI), where it fails."""
import os
import sys

import pytest

from data import REPO
from helpers.demo_site import make_site

sys.path.insert(0, str(REPO / "demo"))
import drive  # noqa: E402
from drive import Client  # noqa: E402

BATCH = ["A man is playing a guitar.", "The stock market fell sharply today.",
         "A cat sleeps on a windowsill."]


@pytest.fixture(scope="module")
def browser():
    try:
        driver = drive.chromium()  # ImportError without selenium
    except (ImportError, FileNotFoundError) as e:
        if os.environ.get("SIMCSE_REQUIRE_DATA") == "1":
            pytest.fail(f"no browser to test the page in ({e}); SIMCSE_REQUIRE_DATA=1 forbids skipping")
        pytest.skip(f"no browser to test the page in: {e}")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, minilm_dir, tmp_path_factory):
    corpus, runs = make_site(tmp_path_factory.mktemp("demo_browser"))
    process, url, _ = drive.start_demo("--model", minilm_dir, "--corpus", str(corpus), "--runs", str(runs))
    browser.get(url)
    yield browser, Client(url)
    drive.stop(process)


def css(driver, selector):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def open_view(driver, name):
    css(driver, f"nav button[data-view={name}]")[0].click()
    drive.wait_for(driver, lambda d: d.find_element("id", f"view-{name}").is_displayed())


def type_into(driver, element_id, text):
    box = driver.find_element("id", element_id)
    box.clear()
    box.send_keys(text)


def test_two_views_of_a_typed_batch_and_p_moved_to_zero(page):
    from selenium.webdriver.common.keys import Keys
    driver, client = page
    open_view(driver, "views")
    type_into(driver, "batch", "\n".join(BATCH))
    pooler = client.get("/api/info")[1]["models"]["A"]["pooler"]
    _, expected = client.post("/api/views", {"sentences": BATCH, "p": 0.1, "temp": 0.05, "pooler": pooler,
                                             "fixed_mask": False, "seed": 1})  # what the page asks
    summary = f"loss {expected['loss']:.4f} (simcse.contrastive_loss)"
    drive.wait_for(driver, lambda d: summary in d.find_element("id", "summary").text)
    diagonal = lambda: driver.execute_script(  # in one call: the page redraws the table on each answer
        "return [...document.querySelectorAll('#cos-matrix td.diag')].map(td => td.textContent)")
    assert diagonal() == [f"{row[i]:.2f}" for i, row in enumerate(expected["cos"])]
    assert "1.00" not in diagonal()  # two dropout masks, two vectors
    assert not driver.find_element("id", "p0-note").is_displayed()

    driver.find_element("id", "p").send_keys(Keys.HOME)  # the slider to its left end: p = 0
    drive.wait_for(driver, lambda d: d.find_element("id", "p-value").text == "0.00"
                   and diagonal() == ["1.00"] * 3)
    note = driver.find_element("id", "p0-note")
    assert note.is_displayed() and "71.1 at p = 0 against 82.5" in note.text and "no collapse" in note.text
    drive.wait_for(driver, lambda d: len(css(d, "#curve polyline.curve")) == 2)  # positives, negatives


def test_a_batch_of_one_is_refused_in_the_page(page):
    driver, _ = page
    open_view(driver, "views")
    type_into(driver, "batch", BATCH[0])
    message = drive.wait_for(driver, lambda d: d.find_element("id", "views-message").is_displayed()
                             and d.find_element("id", "views-message"))
    assert "a batch of one has no in-batch negatives" in message.text
    type_into(driver, "batch", "\n".join(BATCH[:2]))
    drive.wait_for(driver, lambda d: not d.find_element("id", "views-message").is_displayed())


def test_similarity_bars(page):
    driver, client = page
    open_view(driver, "similarity")
    rows = drive.wait_for(driver, lambda d: css(d, "#sim-results .bar-row"))
    others = driver.find_element("id", "sim-others").get_attribute("value").split("\n")
    _, expected = client.post("/api/similarity", {"sentence": "A man is playing a guitar.", "others": others})
    assert [r.find_element("css selector", ".score").text for r in rows] == [f"{s:.3f}" for s in
                                                                             expected["scores"]]


def test_search_and_its_top_hit(page):
    driver, client = page
    drive.wait_for(driver, lambda d: client.get("/api/info")[1]["models"]["A"]["indexed"] == 12)
    open_view(driver, "search")
    type_into(driver, "query", "Someone is playing the guitar.")
    driver.find_element("id", "search-go").click()
    hits = drive.wait_for(driver, lambda d: css(d, "#search-results li .sentence"))
    assert hits[0].text == "A man is playing a guitar."
    assert len(hits) == len(client.post("/api/search", {"query": "Someone is playing the guitar.", "top_k": 5,
                                                        "threshold": 0.5})[1]["hits"])


def test_a_run_folder_loaded_and_its_curves_found(page):
    driver, _ = page
    open_view(driver, "runs")
    items = drive.wait_for(driver, lambda d: len(css(d, "#runs-list li")) == 4 and css(d, "#runs-list li"))
    assert any("runs/damaged/log.jsonl:2: not valid JSON" in li.text for li in items)
    [quick] = [li for li in items if li.text.startswith("runs/quick: 3 evaluations, best STS-B dev 84.10")]
    quick.find_element("css selector", "input[type=checkbox]").click()
    curve = drive.wait_for(driver, lambda d: css(d, '#plot-dev polyline[data-name="runs/quick"]'))
    assert len(curve[0].get_attribute("points").split()) == 3
    assert css(driver, '#plot-au polyline[data-name="runs/quick"]')
    loss = css(driver, '#plot-loss polyline[data-name="runs/quick"]')[0]
    assert len(loss.get_attribute("points").split()) == 2  # step 0 has no loss
    image = drive.wait_for(driver, lambda d: d.execute_script(
        "const i = document.querySelector('#reports img'); return i && i.complete && i.naturalWidth"))
    assert image > 100 and any("p = 0" in td.text for td in css(driver, "#reports td"))  # Table 3's report


def test_before_and_after_side_by_side(page, tiny_checkpoint):
    driver, client = page
    open_view(driver, "compare")
    type_into(driver, "path-B", tiny_checkpoint)
    css(driver, "button[data-load=B]")[0].click()
    loaded = f"model B: {tiny_checkpoint}"
    drive.wait_for(driver, lambda d: loaded in d.find_element("id", "model-message").text)
    drive.wait_for(driver, lambda d: client.get("/api/info")[1]["models"]["B"]["indexed"] == 12)
    driver.find_element("id", "compare-go").click()
    for name in ("A", "B"):
        drive.wait_for(driver, lambda d: css(d, f"#compare-{name} .hits li"))
        assert len(css(driver, f"#compare-{name} table.heat tr")) == 1 + 2  # the header, the batch of two
        assert len(css(driver, f"#compare-{name} .bar-row")) == 5
