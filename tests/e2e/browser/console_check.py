"""The console in a real browser: headless Chromium driven by Selenium against an e2e stack on loopback.

Run by tests/e2e/console.rs, which starts the stack and a loopback receiver whose first deliveries fail, and
passes on stdin: {"base": API base URL, "admin": admin token, "user": non-admin token, "receiver": receiver
URL, "gone_receiver": the URL of a receiver whose first delivery answers 410, "screenshots": directory}. One
browser session does everything:

1. sign-in page; sign in by pasting the admin token;
2. create a subscription to the receiver and watch it become active;
3. publish an event (POST /events, the API a producer uses), find its delivery in the deliveries list,
   watch it fail, open it and read the attempt log (HTTP 500s);
4. retry it from the delivery page and watch it become delivered (attempt log ends with a 200);
5. the overview's charts; every page at 1280x800, then the subscriptions page on a narrow screen;
6. bulk retry: REDRIVE more deliveries fail; the subscription's page previews the retry (a dry run: the
   count and a sample naming exactly them); a slow job is started and cancelled; a new preview counts what
   it left, and that job is followed to completed; the deliveries list shows all of them delivered;
7. re-enable: a second subscription, to the receiver answering 410, is disabled by the worker; the list and
   its page say why; Re-enable (queueing the failed delivery again) makes it active and the delivery arrives;
8. a subscription's own page: a test delivery, a secret rotation (two clicks); a subscription created in
   order per object_id, blocking on failure: its page says so and offers the lane skip; deleted from its page
   (two clicks);
9. a non-admin signed in through a deep link (token in the URL fragment) sees TMI's 403 text and not the
   admin's subscriptions.

A screenshot of each page goes to the screenshots directory. Any browser console message at error level or
any failed request fails the run, except the one 403 step 8 expects. Prints {"subscription": id,
"delivery": id, "redriven": [ids], "gone_subscription": id, "screenshots": [...]} on success.
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
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_SECS = 20
# Deliveries made to fail for the bulk retry (REDRIVE in console.rs).
REDRIVE = 3
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
    print(json.dumps({"subscription": run.sub, "delivery": run.delivery, "redriven": run.redriven,
                      "gone_subscription": run.gone, "screenshots": shots}))


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

    bulk_retry(d, sub)
    reenable(d)
    actions_and_lanes(d, sub)

    found = problems(d, [])
    assert not found, found

    # 9. A non-admin, signed in by a TMI deep link, gets the API's 403 and never the admin's subscription.
    d.find_element(By.ID, "signout").click()
    wait(d, "signed out", lambda d: d.find_element(By.ID, "token"))
    assert d.execute_script("return sessionStorage.getItem('hookline.token')") is None
    d.get(f"{base}/console/#token={cfg['user']}")
    err = wait(d, "the API's error", lambda d: d.find_element(By.CSS_SELECTOR, "#main .error"))
    assert "HTTP 403" in err.text and "forbidden" in err.text.lower(), err.text
    assert "token=" not in d.current_url, "the token must leave the address bar"
    assert sub not in d.page_source and "console-e2e" not in d.page_source
    assert run.gone not in d.page_source and "console-gone" not in d.page_source
    shot(d, "non-admin")
    found = problems(d, ["/admin/webhooks/subscriptions"])
    assert not found, found
    log("all checks passed")


def actions_and_lanes(d, sub):
    """8. Test and rotate from a subscription's page; an ordered subscription made, shown and deleted."""
    go(d, f"#/subscriptions/{sub}")
    wait(d, "the subscription's actions", lambda d: d.find_element(By.CSS_SELECTOR, "button[data-action=test]"))
    d.find_element(By.CSS_SELECTOR, "button[data-action=test]").click()
    done = wait(d, "the test delivery", lambda d: d.find_element(By.ID, "test-result"))
    assert done.find_elements(By.TAG_NAME, "a"), done.text
    rotate = d.find_element(By.CSS_SELECTOR, "button[data-action=rotate]")
    rotate.click()
    assert rotate.text == "Confirm rotation", rotate.text
    rotate.click()
    secret = wait(d, "the rotated secret", lambda d: d.find_element(By.CSS_SELECTOR, "#rotate-result .secret"))
    assert len(secret.text) >= 32, secret.text
    shot(d, "subscription-actions")

    go(d, "#/subscriptions")
    wait(d, "the create form", lambda d: d.find_element(By.ID, "create-subscription"))
    d.find_element(By.ID, "sub-name").send_keys("console-lanes")
    d.find_element(By.ID, "sub-url").send_keys(cfg["receiver"])
    events = d.find_element(By.ID, "sub-events")
    events.clear()
    events.send_keys("threat_model.updated")
    Select(d.find_element(By.ID, "sub-ordering")).select_by_value("key")
    Select(d.find_element(By.ID, "sub-ordering-key")).select_by_value("object_id")
    Select(d.find_element(By.ID, "sub-lane-on-failure")).select_by_value("block")
    d.find_element(By.CSS_SELECTOR, "#create-subscription button[type=submit]").click()
    wait(d, "the create answer", lambda d: d.find_element(By.CSS_SELECTOR, ".result .secret"))
    ordered = wait(d, "the ordered subscription in the list", lambda d: next(
        (r.find_element(By.CSS_SELECTOR, "code.id").text for r in rows(d, "subscriptions") if "console-lanes" in r.text),
        None))
    go(d, f"#/subscriptions/{ordered}")
    wait(d, "the lane skip card", lambda d: d.find_element(By.ID, "lane-skip"))
    facts = d.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "in order per object_id" in facts and "holds its lane" in facts, facts
    assert d.find_element(By.ID, "lane-key").get_attribute("required") is not None
    shot(d, "subscription-ordered")
    delete = d.find_element(By.CSS_SELECTOR, "button[data-action=delete]")
    delete.click()
    delete.click()
    wait(d, "back on the list without it", lambda d: d.current_url.endswith("#/subscriptions") and rows(d, "subscriptions")
         and all("console-lanes" not in r.text for r in rows(d, "subscriptions")))


def go(driver, hash_path):
    driver.execute_script("location.hash = arguments[0]", hash_path)


def rows(driver, table_id):
    return driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")


def no_overflow(driver):
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def bulk_retry(d, sub):
    """6. REDRIVE deliveries fail; preview, start, progress, delivered."""
    for _ in range(REDRIVE):
        publish("threat_model.created")
    go(d, f"/deliveries?subscription_id={sub}&status=failed")
    wait(d, f"{REDRIVE} failed deliveries", lambda d: len(rows(d, "deliveries")) == REDRIVE
         and all("failed" in r.text for r in rows(d, "deliveries")))
    failed = sorted(r.get_attribute("data-id") for r in rows(d, "deliveries"))
    assert run.delivery not in failed, "the retried delivery is no longer failed"

    # From the list's "Retry failed…" to the subscription's page, its redrive section focused.
    d.find_element(By.LINK_TEXT, "Subscriptions").click()
    wait(d, "the subscriptions list", lambda d: rows(d, "subscriptions"))
    d.find_element(By.LINK_TEXT, "Retry failed…").click()
    wait(d, "the redrive form", lambda d: d.find_element(By.ID, "redrive-form"))
    assert d.switch_to.active_element.get_attribute("id") == "redrive-heading"
    assert "active" in d.find_element(By.ID, "sub-status").text

    # The preview (a dry run): the count, and a sample naming exactly the failed ones.
    d.find_element(By.ID, "redrive-preview-button").click()
    count = wait(d, "the preview", lambda d: d.find_element(By.ID, "redrive-count"))
    assert count.text.startswith(f"{REDRIVE} failed deliveries match"), count.text
    sample = sorted(a.text for a in d.find_elements(By.CSS_SELECTOR, "#redrive-sample a.sample-link"))
    assert sample == failed, (sample, failed)
    start = d.find_element(By.ID, "redrive-start")
    assert f"retry {REDRIVE} at 50 per second" in start.text, start.text
    shot(d, "redrive-preview")
    d.set_window_size(390, 844)
    assert no_overflow(d), "horizontal overflow on the subscription's page"
    shot(d, "redrive-preview-narrow")
    d.set_window_size(1280, 800)

    # A slow job (one a second), cancelled at once: it stops where it was. Editing the filters withdraws
    # the preview first.
    d.find_element(By.ID, "rd-pace").send_keys("1")
    assert not d.find_elements(By.ID, "redrive-count"), "editing the filters withdraws the preview"
    d.find_element(By.ID, "redrive-preview-button").click()
    start = wait(d, "the slow preview", lambda d: d.find_element(By.ID, "redrive-start"))
    assert f"retry {REDRIVE} at 1 per second" in start.text, start.text
    start.send_keys(Keys.ENTER)
    wait(d, "the running job", lambda d: d.find_element(By.ID, "redrive-state").text == "running")
    shot(d, "redrive-running")

    def cancel(d):
        # Polls rewrite the numbers beside it, never the button: focus it, then press Enter.
        button = d.find_element(By.ID, "redrive-cancel")
        button.send_keys(Keys.ENTER)
        return True
    wait(d, "Cancel pressed", cancel)
    wait(d, "the job is cancelled", lambda d: d.find_element(By.ID, "redrive-state").text == "cancelled")
    first = int(d.find_element(By.ID, "redrive-progress").text.split()[0])
    assert first < REDRIVE, f"the cancelled job queued {first}"
    assert "The job is cancelled." in d.find_element(By.ID, "redrive-job").text

    # The rest at the default pace: a new preview (what the cancelled job left), Start (Enter on the
    # focused button), the job's progress until it completes.
    d.find_element(By.ID, "rd-pace").clear()
    d.find_element(By.ID, "redrive-preview-button").click()
    count = wait(d, "the second preview", lambda d: d.find_element(By.ID, "redrive-count"))
    left = int(count.text.split()[0])
    rest = sorted(a.text for a in d.find_elements(By.CSS_SELECTOR, "#redrive-sample a.sample-link"))
    # A step in hand when the cancel came may still have queued one more than the job counted.
    assert 1 <= left <= REDRIVE - first and len(rest) == left and set(rest) <= set(failed), (left, rest, first)
    start = d.find_element(By.ID, "redrive-start")
    assert d.switch_to.active_element == start, "Start takes the focus after the preview"
    start.send_keys(Keys.ENTER)
    wait(d, "the job completes", lambda d: d.find_element(By.ID, "redrive-state").text == "completed")
    progress = d.find_element(By.ID, "redrive-progress").text
    assert progress.startswith(f"{left} queued again of {left} matched"), progress
    assert not d.find_elements(By.ID, "redrive-cancel"), "no Cancel once it is done"
    assert d.execute_script("return sessionStorage.length") == 1, "only the token stays in sessionStorage"
    shot(d, "redrive-done")

    # The deliveries list shows them delivered.
    d.find_element(By.LINK_TEXT, "See the subscription's deliveries").click()
    wait(d, "the redriven deliveries are delivered", lambda d: all(
        any(r.get_attribute("data-id") == i and "delivered" in r.text for r in rows(d, "deliveries")) for i in failed))
    run.redriven = failed


def reenable(d):
    """7. A subscription the worker disabled after a 410: the reason shown, Re-enable, active again."""
    d.find_element(By.LINK_TEXT, "Subscriptions").click()
    wait(d, "the subscriptions page", lambda d: d.find_element(By.ID, "create-subscription"))
    d.find_element(By.ID, "sub-name").send_keys("console-gone")
    d.find_element(By.ID, "sub-url").send_keys(cfg["gone_receiver"])
    events = d.find_element(By.ID, "sub-events")
    events.clear()
    events.send_keys("threat_model.deleted")
    d.find_element(By.CSS_SELECTOR, "#create-subscription button[type=submit]").click()

    def row(d):
        return next((r for r in rows(d, "subscriptions") if "console-gone" in r.text), None)
    wait(d, "the second subscription becomes active", lambda d: row(d) and "active" in
         row(d).find_element(By.CSS_SELECTOR, ".badge").text)
    run.gone = row(d).find_element(By.CSS_SELECTOR, "code.id").text
    publish("threat_model.deleted")
    # The list refreshes itself only while a subscription awaits its challenge: reload until the disable
    # shows, with its reason.
    deadline = time.monotonic() + WAIT_SECS
    while not (row(d) and "inactive" in row(d).text):
        assert time.monotonic() < deadline, "the subscription was not disabled"
        time.sleep(0.3)
        d.refresh()
        wait(d, "the subscriptions list", lambda d: rows(d, "subscriptions"))
    assert "disabled: its receiver answered 410 Gone" in row(d).text, row(d).text
    shot(d, "subscriptions-disabled")

    row(d).find_element(By.CSS_SELECTOR, "a.sub-link").click()
    reason = wait(d, "the disabled reason", lambda d: d.find_element(By.ID, "disabled-reason"))
    assert "410 Gone" in reason.text, reason.text
    assert "inactive" in d.find_element(By.ID, "sub-status").text
    assert "Re-enable it first" in d.find_element(By.ID, "redrive-inactive").text
    assert not d.find_elements(By.ID, "redrive-form"), "no redrive of an inactive subscription"
    shot(d, "subscription-disabled")

    # Re-enable, queueing the failed delivery again (checkbox and button by keyboard).
    d.find_element(By.ID, "requeue").send_keys(Keys.SPACE)
    assert d.find_element(By.ID, "requeue").is_selected()
    d.find_element(By.ID, "enable").send_keys(Keys.ENTER)
    done = wait(d, "the re-enable answer", lambda d: d.find_element(By.ID, "enable-result"))
    assert "console-gone is active again; 1 delivery queued again." == done.text, done.text
    wait(d, "the page shows it active", lambda d: d.find_element(By.ID, "sub-status").text == "active"
         and not d.find_elements(By.ID, "disabled") and d.find_elements(By.ID, "redrive-form"))
    shot(d, "subscription-reenabled")
    go(d, f"/deliveries?subscription_id={run.gone}")
    wait(d, "the requeued delivery is delivered", lambda d: len(rows(d, "deliveries")) == 1
         and "delivered" in rows(d, "deliveries")[0].text)


run.sub = None
run.delivery = None
run.redriven = []
run.gone = None

if __name__ == "__main__":
    main()
