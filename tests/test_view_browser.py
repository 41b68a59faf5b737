"""`mailseg view` in a real browser: the command as a process on a free loopback port, Debian's chromium driven
headless by Selenium through the system chromedriver (CI installs both, see .ci/run).

Streamlit fills the page over a websocket after load, and st.dataframe draws on a canvas: the checks read
text from elements that render as text (metrics, tables, markdown). A screenshot of each page is saved in
the test's tmp folder and copied to /tmp/view-shots/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from view_helpers import expected_csv, pandas_filter, publish

from mailseg_dist.core.catalog import SEGMENTS_JSON, USERS_SUBDIR

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path("/tmp/view-shots")

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)", allow_module_level=True)
pytest.importorskip("streamlit")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def published(tmp_path_factory, dask_client):
    return publish(tmp_path_factory.mktemp("view_browser"), dask_client)


@pytest.fixture(scope="module")
def server(published, tmp_path_factory):
    """`mailseg view` as a real process (python -m jobs.cli view), stopped with its process group."""
    port = _free_port()
    log = tmp_path_factory.mktemp("view_log") / "server.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "view", "--out", str(published), "--port",
                                 str(port), "--lang", "es"], stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "MPLBACKEND": "Agg"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGTERM) if proc.poll() is None else None
            pytest.fail(f"mailseg view did not start: {log.read_text(errors='replace')}")
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1700",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def _shot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    return path


def _wait_text(driver, *needles: str, timeout: float = 30) -> str:
    def found(d):
        text = d.find_element(By.TAG_NAME, "body").text
        return text if all(n in text for n in needles) else False

    return WebDriverWait(driver, timeout, poll_frequency=0.3).until(found)


def _page(driver, label: str) -> None:
    """Click a page in the sidebar's radio by its visible label (once the rerun has drawn it)."""
    where = f"//section[@data-testid='stSidebar']//label[.//p[text()='{label}']]"
    WebDriverWait(driver, 30, poll_frequency=0.3).until(lambda d: d.find_elements(By.XPATH, where))
    driver.find_element(By.XPATH, where).click()


def test_overview_search_export_months_and_english_in_a_real_browser(server, browser, published, tmp_path):
    segments = json.loads((published / SEGMENTS_JSON).read_text(encoding="utf-8"))["segments"]
    users = pq.read_table(published / USERS_SUBDIR).to_pandas()
    browser.get(server)
    # Every needle in one wait: Streamlit draws a page piece by piece, so text read once the first pieces show
    # may lack the rest (CI once read the search page before its recommendation line was drawn).
    _wait_text(browser, "Resumen", "Usuarios válidos", "3.000", *[s["nombre"] for s in segments], timeout=60)
    time.sleep(1.5)  # figures
    _shot(browser, tmp_path, "1-resumen")

    _page(browser, "Segmentos y usuarios")
    _wait_text(browser, "usuarios coinciden", "Filtros")
    time.sleep(1)
    _shot(browser, tmp_path, "2-segmentos")

    _page(browser, "Buscar un usuario")
    box = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.XPATH, "//input[@aria-label='Id del usuario']"))
    box.send_keys("=1+1", Keys.ENTER)
    row = users[users["Id"] == "=1+1"].iloc[0]
    _wait_text(browser, "Usuario =1+1", str(row["segmento"]), "Mejor momento de envío", str(row["recomendacion"]))
    _shot(browser, tmp_path, "3-buscar")

    _page(browser, "Exportar audiencia")
    _wait_text(browser, "Segmentos a exportar")
    target = segments[0]
    pick = browser.find_element(By.XPATH, "//div[@data-testid='stMultiSelect']//input")
    pick.send_keys(target["nombre"], Keys.ENTER)
    pick.send_keys(Keys.ESCAPE)  # close the list before the screenshot
    expected = users[users["cluster"] == target["cluster"]]
    n = f"{len(expected):,}".replace(",", ".")
    _wait_text(browser, f"Descargar CSV ({n} usuarios)")
    _shot(browser, tmp_path, "4-exportar")
    link = browser.find_element(By.XPATH, f"//a[contains(., 'Descargar CSV ({n} usuarios)')]")
    assert "segments=" in link.get_attribute("href")
    before = set(browser.window_handles)
    link.click()
    WebDriverWait(browser, 60, poll_frequency=0.3).until(
        lambda d: [p for p in d.downloads.iterdir() if p.suffix == ".csv"])
    got = next(p for p in browser.downloads.iterdir() if p.suffix == ".csv")
    time.sleep(0.5)
    for handle in set(browser.window_handles) - before:  # link buttons open a tab that the download closes
        browser.switch_to.window(handle)
        browser.close()
    browser.switch_to.window(next(iter(before)))
    assert got.read_bytes() == expected_csv(expected, excel=True)
    assert len(pd.read_csv(got, sep=";", encoding="utf-8-sig")) == len(pandas_filter(users, cluster=target["cluster"]))

    _page(browser, "Meses")
    _wait_text(browser, "Proporción de cada segmento por mes", "2026-11", "2026-12", "Quién cambió de segmento")
    time.sleep(1)
    _shot(browser, tmp_path, "5-meses")

    _page(browser, "English")  # the language radio sits in the sidebar too
    _page(browser, "Overview")
    text = _wait_text(browser, "Mailing user segments", "Valid users", "Number of segments (k)",
                      *[s["nombre"] for s in segments])
    assert "Resumen" not in text
    time.sleep(1.5)
    _shot(browser, tmp_path, "6-overview-en")
    assert len(list(tmp_path.glob("*.png"))) == 6
