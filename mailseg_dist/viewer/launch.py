"""Start the viewer: `streamlit run serve.py` in a child process, on loopback unless told otherwise."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

from mailseg_dist.core.errors import UsageError
from mailseg_dist.core.storage import location

SERVER = Path(__file__).with_name("serve.py")
INSTALL_HINT = 'the viewer needs Streamlit: pip install "mailseg[view]"'


def command(out: str, port: int, host: str, lang: str) -> list[str]:
    """The streamlit command line that serves `out` (the folder also reaches the page as `-- --out`)."""
    return [sys.executable, "-m", "streamlit", "run", str(SERVER), "--server.address", host,
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--server.runOnSave", "false", "--global.developmentMode", "false",
            "--client.toolbarMode", "viewer",
            "--", "--out", out, "--lang", lang]


def check(out, port: int, host: str, lang: str) -> str:
    """The checked settings (streamlit importable, port free, language known); the folder as text."""
    if importlib.util.find_spec("streamlit") is None:
        raise UsageError(INSTALL_HINT)
    if lang not in ("es", "en"):
        raise UsageError(f"--lang expected es or en, found {lang!r}")
    if not 0 < int(port) < 65536:
        raise UsageError(f"--port expected 1-65535, found {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") \
                from None
    return str(location(out, "--out"))


def serve(out, port: int = 8501, host: str = "127.0.0.1", lang: str = "es") -> dict:
    """Run the viewer until it is stopped (Ctrl+C); returns {"url", "out", "returncode"}."""
    folder = check(out, port, host, lang)
    url = f"http://{host}:{port}"
    print(f"mailseg: viewer of {folder} at {url} (Ctrl+C to stop)", file=sys.stderr, flush=True)
    env = {**os.environ, "MAILSEG_VIEW_OUT": folder, "MAILSEG_VIEW_LANG": lang}
    proc = subprocess.Popen(command(folder, port, host, lang), env=env)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        code = proc.wait()
    return {"url": url, "out": folder, "returncode": code}
