"""The built-in page in a real browser: headless Chromium (Debian's, driven by Playwright) with a fake
microphone that plays an espeak-ng question; the page connects, the server hears the turn, and the reply's
text shows on the page while its audio is scheduled for playback. A screenshot is kept."""

import shutil
import subprocess

import pytest
from funaudiochat.chat import Sampling, random_pipeline
from funaudiochat.chat.server.app import make_app
from funaudiochat.chat.server.config import ServerConfig
from funaudiochat.chat.server.engine import Engine

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is installed by tools/setup.sh test"
)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by tools/setup.sh test")
def test_the_page_hears_the_microphone_and_shows_and_plays_the_reply(serve, espeak, tmp_path):
    spoken = espeak("What is the weather like today?", tmp_path / "spoken.wav")
    microphone = tmp_path / "microphone.wav"  # the question with silence around it (the fake mic loops)
    subprocess.run(["sox", str(spoken), "-b", "16", str(microphone), "pad", "0.5", "3"], check=True)
    url = serve(make_app(Engine(random_pipeline(0)), ServerConfig(), Sampling(max_new_tokens=12)))
    args = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.evaluate("document.getElementById('maxTokens').value = 12")  # short replies: a quick test
            page.click("#connect")
            page.wait_for_function("window.fac.completed >= 1", timeout=60_000)
            text = page.inner_text(".assistant >> nth=0")
            played = page.evaluate("window.fac.played")
            page.screenshot(path=str(tmp_path / "page.png"))
        finally:
            browser.close()
    assert page_has(text) and played > 24000 * 0.2  # some reply audio reached the player
    assert (tmp_path / "page.png").stat().st_size > 1000


def page_has(text: str) -> bool:
    """The reply's line holds some text (the random pipeline's words are noise, but they are there)."""
    return bool(text.strip())
