"""The `mailseg view` server: Streamlit's ASGI app over app.py plus one route, /export.csv.

`streamlit run serve.py` finds `app` below and serves it with uvicorn. /export.csv streams the audience
(queries.export_csv) in chunks, so a 10M-user export never sits whole in the server's memory, which
Streamlit's own download button (data held in memory per session) would need. It reads the folder named
by MAILSEG_VIEW_OUT (set by `mailseg view`) and writes nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from streamlit.starlette import App

from mailseg_dist.core.errors import MailsegError
from mailseg_dist.viewer import queries as q


def export_response(out: str, params) -> StreamingResponse | PlainTextResponse:
    """The streamed CSV for query parameters (see queries.to_params, plus lang, excel, month)."""
    try:
        results = q.open_results(out)
        if params.get("month"):
            results = results.for_month(params["month"])
        filters = q.from_params(results, params)
    except MailsegError as exc:
        return PlainTextResponse(f"mailseg view: {exc}", status_code=400)
    lang = "en" if params.get("lang") == "en" else "es"
    segments = (params.get("segments") or "todos" if lang == "es" else params.get("segments") or "all")
    name = f"audiencia_{results.month or ''}_{re.sub(r'[^0-9a-z]+', '-', segments)}.csv"
    chunks = q.export_csv(results, filters, lang=lang, excel=params.get("excel") == "1")
    return StreamingResponse(chunks, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


async def export(request):
    return export_response(os.environ.get("MAILSEG_VIEW_OUT", "Resultados"), request.query_params)


app = App(str(Path(__file__).with_name("app.py")), routes=[Route("/export.csv", export)])
