"""The pairwise rating widget in a real JupyterLab, clicked in a real (headless) Chromium.

What it proves that tests/test_widgets.py cannot: the widget renders in JupyterLab, its buttons
are real buttons a person can press, each press reaches the kernel and lands in the JSONL file at
once, and a kernel restart loses nothing.

Steps: start ``jupyter lab`` on 127.0.0.1 (isolated config/data/runtime dirs in tmp_path, a token,
no browser), write a small rating notebook (``rating_notebook``) into its root, open it in Chromium (Playwright;
Debian's /usr/bin/chromium, never a downloaded browser; every non-loopback request is blocked), wait
for the kernel to be Idle, Run All Cells, click A, B, Tie, Skip, Undo, A and check the file after
each click; then restart the kernel as a person does (Kernel > Restart Kernel…, confirm), Run All
Cells again and check the file is unchanged, the restarted kernel (a new process) reads back the same
records, and the widget resumes at the first pair not rated; then double-click "A is better" (one
record, not two) and type "a" into the widget's keys box (one record, and no notebook cell inserted:
``a`` inserts a cell in JupyterLab's command mode).

Pitfalls met on the way (keep them in mind when changing this file): Run All before the status bar
reads "Idle" is silently dropped; after a restart, wait for the status to leave "Idle" and come back
(a restart through the REST API instead can leave the page at "Starting"); menu items' accessible
names include their shortcut ("Restart Kernel… 0, 0"); the news pop-up is switched off in settings.

Without /usr/bin/chromium (or the ``playwright`` package) the test is skipped, unless
RLHF_LAB_REQUIRE_BROWSER=1 (CI), where it fails instead.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from rlhf_lab.preferences import read_preferences

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK = "rating_smoke.ipynb"
TIMEOUT_MS = 30_000  # longest wait for any one thing in the page (the machine is shared, 2 cores)

# The notebook's pairs: (prompt, first response, second response); not blind, so A = first.
PAIRS = [("Say hello.", "Hello! How can I help you today?", "hello hello hello hello"),
         ("Name a fruit.", "An apple.", "I will not answer that."),
         ("What is 2 + 2?", "2 + 2 = 4.", "Maybe 5?"),
         ("Suggest a pet name.", "How about Biscuit?", "Names are hard."),
         ("Say thanks.", "Thank you very much!", "k.")]
# The clicks; after each, the progress counter the widget shows and the records in the file.
CLICKS = [("A is better", "2 of 5", 1), ("B is better", "3 of 5", 2), ("Tie", "4 of 5", 3),
          ("Skip", "5 of 5", 3), ("Undo", "3 of 5", 2), ("A is better", "4 of 5", 3)]


def rating_notebook() -> nbformat.NotebookNode:
    """The notebook the browser drives: 5 pairs in a PairwiseRater (human mode) saving to ratings.jsonl.

    Its last cell writes what the kernel reads back from the file (and the kernel's pid) to
    reread.json, for the test to compare. Built here rather than shipped as a file, so that nbval
    (which collects every .ipynb under tests/) never runs it.
    """
    cells = [
        nbformat.v4.new_markdown_cell("# Rating widget smoke test\n\nDriven by `tests/test_browser_rating.py`."),
        nbformat.v4.new_code_cell(
            "import json, os\n"
            "from pathlib import Path\n"
            "from rlhf_lab.preferences import read_preferences\n"
            "from rlhf_lab.widgets import rate_pairs\n\n"
            f"PAIRS = {PAIRS!r}\n"
            'STORE = Path("ratings.jsonl")  # next to this notebook'),
        nbformat.v4.new_code_cell(
            'rater = rate_pairs(PAIRS, STORE, mode="human", rater_name="browser-test", source="smoke")'),
        nbformat.v4.new_code_cell(
            "records = read_preferences(STORE) if STORE.exists() else []\n"
            'Path("reread.json").write_text(json.dumps({"pid": os.getpid(), "progress": rater.progress_text,\n'
            '    "records": [[r.prompt, r.chosen, r.rejected, r.tie, r.rater] for r in records]}))\n'
            'print(len(records), "records read back by kernel", os.getpid())'),
    ]
    return nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})


def _require(condition: bool, why: str, fix: str) -> None:
    """Skip when the browser setup is missing, or fail when CI said it must be there."""
    if condition:
        return
    if os.environ.get("RLHF_LAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{why}; {fix} (RLHF_LAB_REQUIRE_BROWSER=1, so this is a failure, not a skip)")
    pytest.skip(f"{why}; {fix} (set RLHF_LAB_REQUIRE_BROWSER=1 to fail instead of skipping)")


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies (Linux PR_SET_PDEATHSIG = 1)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class Lab:
    """A running JupyterLab server: its root folder, base URL, token and process."""

    def __init__(self, root: Path, url: str, token: str, proc: subprocess.Popen, log: Path) -> None:
        self.root, self.url, self.token, self.proc, self.log = root, url.rstrip("/"), token, proc, log

    def api(self, method: str, path: str) -> object:
        req = urllib.request.Request(f"{self.url}{path}", method=method, data=b"" if method == "POST" else None,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"


@pytest.fixture
def lab(tmp_path: Path):
    """Start ``jupyter lab`` in isolation; stop it (and its kernels) afterwards."""
    _require(CHROMIUM.exists(), f"{CHROMIUM} is missing", "install it with `apt-get install -y chromium`")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _require(False, "the Python package `playwright` is missing", "pip install playwright (no browser download)")
    root, home = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    settings = home / "user-settings"
    for name, value in {"apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
                        "notebook-extension/tracker": {"windowingMode": "none"}}.items():
        f = settings / "@jupyterlab" / f"{name}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    # Offline and lean: no news feed, no update check, no pip-backed extension manager, no LSP or terminals,
    # no build check (it runs node/yarn on every page load).
    (home / "config" / "labconfig").mkdir(parents=True)
    (home / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"buildCheck": False, "buildAvailable": False}))
    (home / "config" / "jupyter_server_config.json").write_text(json.dumps({
        "ServerApp": {"jpserver_extensions": {"jupyter_lsp": False, "jupyter_server_terminals": False}},
        "LabApp": {"news_url": None, "extension_manager": "readonly",
                   "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate"}}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               RLHF_LAB_ARTIFACTS=str(tmp_path / "artifacts"), PYDEVD_DISABLE_FILE_VALIDATION="1")
    token = os.urandom(16).hex()
    log = tmp_path / "jupyter.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.open_browser=False",
           "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0", "--ServerApp.port_retries=0",  # port 0: a free one
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={home / 'workspaces'}"]
    if os.geteuid() == 0:  # containers and CI runners often run as root
        cmd.append("--allow-root")
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    server = None
    try:
        # The server writes jpserver-<pid>.json (with its URL) to the runtime dir once it listens.
        info = home / "runtime" / f"jpserver-{proc.pid}.json"
        deadline = time.monotonic() + 60
        while server is None:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not start in 60 s:\n{log.read_text(errors='replace')[-3000:]}")
            if info.exists():
                try:
                    url = json.loads(info.read_text())["url"]
                    server = Lab(root, url, token, proc, log)
                    server.api("GET", "/api/status")
                except (ValueError, KeyError, OSError):
                    server = None
            if server is None:
                time.sleep(0.2)
        yield server
    finally:
        if server is not None and proc.poll() is None:
            try:
                server.api("POST", "/api/shutdown")  # stops the kernels, then the server
            except OSError:
                pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _only_loopback(route) -> None:
    host = urlparse(route.request.url).hostname
    if host in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


def _wait_idle(page) -> None:
    """Wait until the status bar says the kernel is Idle (Run All before that is silently dropped)."""
    from playwright.sync_api import expect
    expect(page.locator(".jp-StatusBar-Item").filter(has_text="Idle").first).to_be_visible(timeout=TIMEOUT_MS)


# Records the kernel status text of the status bar on every change, from now on.
_WATCH_KERNEL_STATUS = """() => {
    window.rlhfKernelStatus = [];
    const bar = document.querySelector('.jp-StatusBar-Widget');
    const seen = () => { const t = [...bar.querySelectorAll('.jp-StatusBar-TextItem')]
        .map(e => e.textContent).find(t => t.includes('|'));
      if (t && t !== window.rlhfKernelStatus.at(-1)) window.rlhfKernelStatus.push(t); };
    new MutationObserver(seen).observe(bar, {subtree: true, childList: true, characterData: true});
}"""


def _restart_kernel(page) -> None:
    """Kernel > Restart Kernel…, confirm, and wait until the status bar went non-Idle and back to Idle."""
    page.evaluate(_WATCH_KERNEL_STATUS)
    page.get_by_role("menuitem", name="Kernel", exact=True).click()
    page.locator('li[data-command="kernelmenu:restart"]').click()  # name includes its shortcut "0, 0"
    page.get_by_role("dialog").get_by_role("button", name="Confirm Kernel Restart", exact=True).click()
    page.wait_for_function("window.rlhfKernelStatus.some(t => !t.endsWith('Idle'))", timeout=TIMEOUT_MS)
    page.wait_for_function("(window.rlhfKernelStatus.at(-1) || '').endsWith('Idle')", timeout=TIMEOUT_MS)
    print("kernel status during the restart:", page.evaluate("window.rlhfKernelStatus"))


def _run_all(page) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def _read_back(root: Path, not_pid: int | None) -> dict:
    """What the notebook's last cell wrote: the kernel's pid and the records it read back."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    f = root / "reread.json"
    while time.monotonic() < deadline:
        if f.exists():
            try:
                data = json.loads(f.read_text())
            except ValueError:  # caught mid-write
                data = None
            if data is not None and data["pid"] != not_pid:
                return data
        time.sleep(0.2)
    raise AssertionError(f"the notebook's last cell did not write {f} (from a new kernel) in time")


def _records(path: Path) -> list[list]:
    return [[r.prompt, r.chosen, r.rejected, r.tie, r.rater] for r in read_preferences(path)]


def test_rate_in_jupyterlab_and_survive_a_kernel_restart(lab: Lab) -> None:
    from playwright.sync_api import expect, sync_playwright  # present: the lab fixture checked

    started = time.monotonic()
    marks: dict[str, float] = {}  # phase -> seconds since start, printed at the end (pytest -s)
    nbformat.write(rating_notebook(), lab.root / NOTEBOOK)
    store = lab.root / "ratings.jsonl"
    p0, p1, p2 = (list(p) for p in PAIRS[:3])
    expected = [[*p0, False, "browser-test"],                    # A is better
                [p1[0], p1[2], p1[1], False, "browser-test"],    # B is better
                [*p2, False, "browser-test"]]                    # Tie, undone, then A is better

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.route("**/*", _only_loopback)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
            try:
                _wait_idle(page)
                marks["kernel idle"] = time.monotonic() - started
                _run_all(page)
                first = _read_back(lab.root, not_pid=None)
                assert first["records"] == [] and first["progress"] == "1 of 5"
                progress = page.locator(".rlhf-progress")
                expect(progress).to_have_text("1 of 5")

                # Each click must be on disk before the next one: the counter moves only after the
                # kernel has handled the click, and the handler appends (flush + fsync) first.
                written = []
                for button, after, n_expected in CLICKS:
                    page.get_by_role("button", name=button, exact=True).click()
                    expect(progress).to_have_text(after)
                    written = _records(store)
                    assert len(written) == n_expected, f"after {button!r}: {written}"
                assert written == expected
                assert [r.source for r in read_preferences(store)] == ["smoke"] * 3
                on_disk = store.read_bytes()
                marks["6 clicks checked"] = time.monotonic() - started

                # Restart the kernel the way a person does (Kernel > Restart Kernel…), run all again.
                _restart_kernel(page)
                marks["kernel restarted"] = time.monotonic() - started
                _run_all(page)
                second = _read_back(lab.root, not_pid=first["pid"])
                assert store.read_bytes() == on_disk, "the kernel restart changed the ratings file"
                assert second["records"] == expected, "the restarted kernel read back other records"
                assert second["progress"] == "4 of 5"  # resumes at the first pair not rated
                expect(progress).to_have_text("4 of 5")
                marks["rerun checked"] = time.monotonic() - started

                # A real double-click on "A is better" (two click messages before the page hears back)
                # rates pair 4 once; pair 5 stays unrated.
                page.get_by_role("button", name="A is better", exact=True).dblclick()
                expect(progress).to_have_text("5 of 5")
                page.wait_for_timeout(600)  # the second click has reached the kernel; a person reads pair 5
                p3 = list(PAIRS[3])
                assert _records(store) == expected + [[*p3, False, "browser-test"]]

                # The keys box: "a" typed there rates pair 5 and inserts no notebook cell.
                cells = page.locator(".jp-Notebook .jp-Cell")
                n_cells = cells.count()
                page.locator(".rlhf-keys input").click()
                page.keyboard.press("a")
                expect(progress).to_have_text("5 of 5 · done")
                p4 = list(PAIRS[4])
                assert _records(store) == expected + [[*p3, False, "browser-test"], [*p4, False, "browser-test"]]
                assert cells.count() == n_cells, "pressing 'a' in the keys box inserted a notebook cell"
                assert page.locator(".rlhf-keys input").input_value() == ""
                last = read_preferences(store)
                assert [r.shown_first for r in last] == ["chosen", "rejected", "chosen", "chosen", "chosen"]
                assert all(r.seconds is not None and r.seconds > 0 for r in last)
                marks["double-click and key checked"] = time.monotonic() - started
            except Exception:
                page.screenshot(path=str(lab.root.parent / "failure.png"))
                print("JupyterLab log:\n" + lab.log_tail())
                raise
        finally:
            browser.close()
    print("browser test timings (s since start):", {k: round(v, 1) for k, v in marks.items()})
    assert time.monotonic() - started < 120, "the browser test got slow: investigate before it gets flaky"
