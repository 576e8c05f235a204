"""A screenshot of each view of the demo, taken in the real browser (demo/drive.py), into docs/images/ as
small PNGs (256 colours).

    python demo/screenshots.py --compare runs/quick/best --runs runs results

The arguments are demo.py's (--model, --compare, --runs, --corpus, ...); --out names the folder.
"""
import argparse
import io
import sys
import time
from pathlib import Path

import drive

VIEWS = ("views", "views-p0", "similarity", "search", "runs", "compare")


def css(driver, selector):
    return driver.find_elements("css selector", selector)


def show(driver, name):
    css(driver, f"nav button[data-view={name}]")[0].click()
    drive.wait_for(driver, lambda d: d.find_element("id", f"view-{name}").is_displayed())


def prepare(driver, view):
    """Bring the page to what the screenshot of `view` shows."""
    from selenium.webdriver.common.keys import Keys
    if view == "views":
        show(driver, "views")
        drive.wait_for(driver, lambda d: css(d, "#cos-matrix td.diag") and css(d, "#curve polyline"))
    elif view == "views-p0":
        driver.find_element("id", "p").send_keys(Keys.HOME)
        drive.wait_for(driver, lambda d: driver.find_element("id", "p0-note").is_displayed())
    elif view == "similarity":
        driver.find_element("id", "p").send_keys(Keys.PAGE_UP)  # p back above 0 for the views to come
        show(driver, "similarity")
        drive.wait_for(driver, lambda d: css(d, "#sim-results .bar-row"))
    elif view == "search":
        show(driver, "search")
        drive.wait_for(driver, lambda d: "indexing" not in d.find_element("id", "corpus-line").text, 600)
        driver.find_element("id", "search-go").click()
        drive.wait_for(driver, lambda d: css(d, "#search-results li .sentence"))
    elif view == "runs":
        show(driver, "runs")
        boxes = drive.wait_for(driver, lambda d: css(d, "#runs-list input[type=checkbox]"))
        for box in boxes[:4]:
            box.click()
        drive.wait_for(driver, lambda d: css(d, "#plot-dev polyline") and d.execute_script(
            "return [...document.querySelectorAll('#reports img')].every(i => i.complete)"))
    elif view == "compare":
        show(driver, "compare")
        driver.find_element("id", "compare-go").click()
        drive.wait_for(driver, lambda d: css(d, "#compare-B .hits li") or css(d, "#compare-B .message"), 120)
    time.sleep(0.3)  # the last frame painted


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=drive.REPO / "docs" / "images")
    args, demo_args = parser.parse_known_args()
    from PIL import Image
    args.out.mkdir(parents=True, exist_ok=True)
    process, url, _ = drive.start_demo(*demo_args)
    driver = drive.chromium(1280, 1000)
    try:
        driver.get(url)
        for view in VIEWS:
            prepare(driver, view)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1280, min(max(height, 600), 2400) + 140)  # + the window's own bars
            png = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
            path = args.out / f"demo-{view}.png"
            png.quantize(256).save(path, optimize=True)
            print(f"{path}: {path.stat().st_size // 1024} KiB")
            driver.set_window_size(1280, 1000)
    finally:
        driver.quit()
        drive.stop(process)


if __name__ == "__main__":
    sys.exit(main())
