"""The web page in headless Chromium: type a query, see results, click one to send feedback.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them); where
they are missing the test is skipped with that message.
"""

import json
import shutil
import urllib.request

import pytest

from benchmarks.service_runner import running_service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
TOKEN = "page-test-token"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="headless Chromium is not installed; install it with: "
        "sudo apt-get install -y chromium chromium-driver (.ci/run does this before make test)",
    ),
]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_typing_a_query_shows_results_and_a_click_sends_feedback(browser, smoke_index, isolated_models_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    work = tmp_path / "index"
    shutil.copytree(smoke_index, work)  # feedback changes the index: a copy
    with running_service(work, isolated_models_dir, TOKEN) as base:
        browser.get(base + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(EC.text_to_be_present_in_element((By.ID, "index-name"), "items"))
        browser.find_element(By.ID, "query").send_keys("a red circle above a blue square")
        browser.find_element(By.ID, "search-button").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .hit")) > 0)
        hits = browser.find_elements(By.CSS_SELECTOR, "#results .hit")
        assert len(hits) == 12  # the page asks for 12
        assert "results, ranked by" in browser.find_element(By.ID, "status").text
        # Thumbnails load from /items/{id}/media; each card shows a caption and why it matched.
        wait.until(lambda d: d.execute_script("return document.querySelector('#results .hit img').naturalWidth") > 0)
        first = hits[0]
        assert first.find_element(By.CSS_SELECTOR, ".caption").text
        assert "dense" in first.find_element(By.CSS_SELECTOR, ".why").text
        # Items with a spoken caption get an audio player that loads their sound.
        players = browser.find_elements(By.CSS_SELECTOR, "#results .hit audio")
        assert players and all("modality=audio" in p.get_attribute("src") for p in players)
        assert browser.execute_script(
            "return fetch(arguments[0]).then(r => r.headers.get('content-type'))", players[0].get_attribute("src")
        ).startswith("audio/")
        request = urllib.request.Request(
            f"{base}/search",
            data=json.dumps({"query": "a red circle above a blue square", "k": 12}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as r:
            expected = [h["item_id"] for h in json.loads(r.read())["hits"]]
        assert [h.get_attribute("data-item-id") for h in hits] == expected

        # Without the token, feedback is refused and the page says so; with it, it is recorded.
        first.click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "401"))
        browser.find_element(By.TAG_NAME, "summary").click()
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        first.click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "recorded as an answer"))
        assert "chosen" in first.get_attribute("class")
        browser.execute_script("window.scrollTo(0, 0)")
        screenshot = tmp_path / "search-page.png"
        assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
        print(f"screenshot: {screenshot}")
