"""The console in a real browser: headless Chromium driven by Selenium against an e2e stack on loopback.

Run by tests/e2e/console.rs, which starts the stack and a loopback receiver whose first deliveries fail, and
passes on stdin: {"base": API base URL, "admin": admin token, "user": non-admin token, "receiver": receiver
URL, "screenshots": directory}. One browser session does everything:

1. sign-in page; sign in by pasting the admin token;
2. create a subscription to the receiver and watch it become active;
3. publish an event (POST /events, the API a producer uses), find its delivery in the deliveries list,
   watch it fail, open it and read the attempt log (HTTP 500s);
4. retry it from the delivery page and watch it become delivered (attempt log ends with a 200);
5. the overview's charts; every page at 1280x800, then the subscriptions page on a narrow screen;
6. a non-admin signed in through a deep link (token in the URL fragment) sees TMI's 403 text and not the
   admin's subscription.

A screenshot of each page goes to the screenshots directory. Any browser console message at error level or
any failed request fails the run, except the one 403 step 6 expects. Prints {"subscription": id,
"delivery": id, "screenshots": [...]} on success.
"""

import json
import time
import os
import sys
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT_SECS = 20
cfg = json.load(sys.stdin)
base = cfg["base"].rstrip("/")
shots = []


def log(msg):
    print(f"console_check: {msg}", file=sys.stderr, flush=True)


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,800", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


def wait(driver, what, cond):
    def check(d):
        try:
            return cond(d)
        except StaleElementReferenceException:
            return False
    try:
        return WebDriverWait(driver, WAIT_SECS, poll_frequency=0.1).until(check)
    except Exception as e:
        shot(driver, "failure")
        raise AssertionError(f"timed out waiting for: {what}; page: {driver.find_element(By.ID, 'main').text[:2000]}") from e


def shot(driver, name):
    path = os.path.join(cfg["screenshots"], f"{name}.png")
    driver.save_screenshot(path)
    shots.append(path)


def text(driver):
    return driver.find_element(By.ID, "main").text


def publish(event_type):
    req = urllib.request.Request(
        f"{base}/events", method="POST",
        data=json.dumps({"event_type": event_type, "data": {"name": "from the console test"}}).encode(),
        headers={"Authorization": f"Bearer {cfg['admin']}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202, r.status


def check_headers():
    with urllib.request.urlopen(f"{base}/console/", timeout=10) as r:
        csp = r.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "unsafe" not in csp, csp
        assert r.headers.get("X-Content-Type-Options") == "nosniff"


def problems(driver, expected):
    """Console errors and failed requests, minus those `expected` (substrings) allows."""
    found = []
    for e in driver.get_log("browser"):
        if e["level"] in ("SEVERE", "ERROR") and not any(x in e["message"] for x in expected):
            found.append(f"console: {e['message']}")
    for e in driver.get_log("performance"):
        msg = json.loads(e["message"])["message"]
        if msg["method"] == "Network.responseReceived":
            resp = msg["params"]["response"]
            if resp["status"] >= 400 and not any(x in resp["url"] for x in expected):
                found.append(f"request: {resp['status']} {resp['url']}")
        elif msg["method"] == "Network.loadingFailed":
            p = msg["params"]
            if not p.get("canceled"):
                found.append(f"request failed: {p.get('errorText')} ({p.get('type')})")
    return found


def main():
    check_headers()
    driver = browser()
    try:
        run(driver)
    finally:
        driver.quit()
    print(json.dumps({"subscription": run.sub, "delivery": run.delivery, "screenshots": shots}))


def run(driver):
    d = driver
    # 1. Sign in.
    d.get(f"{base}/console/")
    wait(d, "the sign-in form", lambda d: d.find_element(By.ID, "token"))
    shot(d, "signin")
    d.find_element(By.ID, "token").send_keys(cfg["admin"])
    d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(d, "the subscriptions page", lambda d: d.find_element(By.ID, "create-subscription"))
    assert d.execute_script("return document.cookie") == "", "the console must not set cookies"
    assert d.execute_script("return window.localStorage.length") == 0, "nothing in localStorage"
    assert d.execute_script("return sessionStorage.getItem('hookline.token')") == cfg["admin"]

    # 2. Create a subscription; it becomes active once the receiver answers the challenge.
    d.find_element(By.ID, "sub-name").send_keys("console-e2e")
    d.find_element(By.ID, "sub-url").send_keys(cfg["receiver"])
    events = d.find_element(By.ID, "sub-events")
    events.clear()
    events.send_keys("threat_model.created")
    d.find_element(By.CSS_SELECTOR, "#create-subscription button[type=submit]").click()
    created = wait(d, "the create answer", lambda d: d.find_element(By.CSS_SELECTOR, ".result .secret"))
    assert len(created.text) >= 32, created.text
    sub = wait(d, "the new subscription's id", lambda d: next(
        (c.text for c in d.find_elements(By.CSS_SELECTOR, "#subscriptions code.id")), None))
    run.sub = sub
    wait(d, "the subscription becomes active", lambda d: "active" in
         [b.text for b in d.find_elements(By.CSS_SELECTOR, "#subscriptions .badge")])
    wait(d, "the circuit and sparkline", lambda d: d.find_elements(By.CSS_SELECTOR, "#subscriptions svg.spark"))
    shot(d, "subscriptions")

    # 3. Publish; the delivery fails (the receiver answers 500 to every attempt of the first delivery).
    publish("threat_model.created")
    d.find_element(By.LINK_TEXT, "Deliveries").click()
    wait(d, "the deliveries list", lambda d: d.find_element(By.ID, "filters"))
    d.find_element(By.ID, "f-subscription").send_keys(sub)
    d.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    link = wait(d, "the delivery fails", lambda d: next(
        (r.find_element(By.CSS_SELECTOR, "a.delivery-link") for r in d.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr")
         if "failed" in r.text), None))
    run.delivery = link.text
    shot(d, "deliveries")
    # Live refresh must keep the scroll position: scroll, wait for two refreshes, compare.
    d.set_window_size(1280, 320)
    d.execute_script("window.scrollTo(0, 120)")
    y = d.execute_script("return window.scrollY")
    assert y > 0, "the deliveries page should scroll in a 320-pixel-high window"
    before = d.execute_script("return document.querySelector('#deliveries tbody')")
    wait(d, "a live refresh", lambda d: d.execute_script(
        "return document.querySelector('#deliveries tbody')") != before)
    assert d.execute_script("return window.scrollY") == y, "live refresh moved the page"
    d.set_window_size(1280, 800)

    # The attempt log: five attempts, each HTTP 500.
    d.find_element(By.CSS_SELECTOR, "a.delivery-link").click()
    wait(d, "the attempt log", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")) == 5)
    rows = [r.text for r in d.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")]
    assert all("500" in r for r in rows), rows
    assert "threat_model.created" in d.find_element(By.CSS_SELECTOR, "pre.payload").text
    shot(d, "delivery-failed")

    # 4. Retry: delivered, and the log's last attempt is a 200.
    d.find_element(By.ID, "retry").click()
    wait(d, "the retried delivery is delivered", lambda d: "delivered" in d.find_element(By.ID, "delivery-status").text)
    last = d.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")[-1].text
    assert "200" in last and "delivered" in last, last
    shot(d, "delivery")

    # 5. Overview: the counters saw the failure and the delivery.
    # The worker adds its counts to Redis once a second: reload the page until they are in.
    d.find_element(By.LINK_TEXT, "Overview").click()
    deadline = time.monotonic() + WAIT_SECS
    while True:
        wait(d, "the overview's charts", lambda d: len(d.find_elements(By.CSS_SELECTOR, "figure.chart")) == 2)
        stats = {e.find_element(By.CLASS_NAME, "stat-label").text: e.find_element(By.CLASS_NAME, "stat-value").text
                 for e in d.find_elements(By.CSS_SELECTOR, ".stat")}
        if int(stats["delivered"]) >= 1 and int(stats["failed"]) >= 1:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.5)
        d.refresh()
    shot(d, "overview")

    # Narrow screen: nothing wider than the viewport (tables scroll inside their frame).
    d.set_window_size(390, 844)
    d.find_element(By.LINK_TEXT, "Subscriptions").click()
    wait(d, "the subscriptions list", lambda d: d.find_elements(By.CSS_SELECTOR, "#subscriptions tbody tr"))
    assert d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), "horizontal overflow"
    shot(d, "subscriptions-narrow")
    d.set_window_size(1280, 800)
    wait(d, "the sparkline after the deliveries", lambda d: "1 ✓ 1 ✗" in d.find_element(By.ID, "subscriptions").text)
    shot(d, "subscriptions-health")

    found = problems(d, [])
    assert not found, found

    # 6. A non-admin, signed in by a TMI deep link, gets the API's 403 and never the admin's subscription.
    d.find_element(By.ID, "signout").click()
    wait(d, "signed out", lambda d: d.find_element(By.ID, "token"))
    assert d.execute_script("return sessionStorage.getItem('hookline.token')") is None
    d.get(f"{base}/console/#token={cfg['user']}")
    err = wait(d, "the API's error", lambda d: d.find_element(By.CSS_SELECTOR, "#main .error"))
    assert "HTTP 403" in err.text and "forbidden" in err.text.lower(), err.text
    assert "token=" not in d.current_url, "the token must leave the address bar"
    assert sub not in d.page_source and "console-e2e" not in d.page_source
    shot(d, "non-admin")
    found = problems(d, ["/admin/webhooks/subscriptions"])
    assert not found, found
    log("all checks passed")


run.sub = None
run.delivery = None

if __name__ == "__main__":
    main()
