"""The self-contained HTML report (Resultados/informe.html): figures embedded as base64 PNG.

`report_context` gathers what the report shows from the run's small objects (manifest,
model result, segment table, figure paths); `write_report` renders it. Every value
taken from data goes through html.escape. Sections: data used, choice of k, segments
(profile, name, level, action and reason), quality (silhouette, Calinski-Harabasz,
Davies-Bouldin, bootstrap stability read as < 0.6 unstable, 0.6-0.85 stable,
> 0.85 highly stable), and the technical details (features, engine, timings, files).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path

import numpy as np
import pandas as pd

from mailseg_dist.core.atomic import write_text
from mailseg_dist.core.storage import as_location
from mailseg_dist.segments.profiles import population
from mailseg_dist.segments.texts import POPULATION, WEEKDAYS, check_lang, k_reason_text

CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{border-bottom:3px solid #1565c0;padding-bottom:.3em}
h2{margin-top:2em;color:#1565c0;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.8em 0;
font-size:.92em}th,td{border:1px solid #ddd;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#f3f6fa}td.n{text-align:right;font-variant-numeric:tabular-nums}tr.chosen{background:#fff3e0;
font-weight:600}img{max-width:100%;border:1px solid #eee;margin:.6em 0}.card{border:1px solid #ddd;
border-left:6px solid #999;border-radius:4px;padding:.6em 1em;margin:1em 0}.card.alta{border-left-color:#2e7d32}
.card.baja{border-left-color:#ef8f00}.badge{display:inline-block;padding:.1em .6em;border-radius:1em;color:#fff;
font-size:.85em}.alta .badge{background:#2e7d32}.baja .badge{background:#ef8f00}.muted{color:#666;font-size:.9em}"""

T = {
    "es": {"title": "Segmentación de usuarios de mailing", "generated": "Generado el {t}",
           "data": "Datos analizados", "input": "Fichero de entrada", "sha": "SHA-256", "month": "Mes",
           "rows_in": "Filas leídas", "rows_kept": "Usuarios válidos", "rows_rejected": "Filas rechazadas",
           "rejects": "Rechazos por motivo", "reason": "Motivo", "count": "Filas", "rejects_path": "Detalle en",
           "choice": "Elección del número de segmentos (k)", "chosen": "k elegida: {k}", "why": "Por qué",
           "k_cols": ["k", "inercia", "silueta", "Calinski-Harabasz", "Davies-Bouldin", "tamaños"],
           "segments": "Segmentos", "seg_cols": ["Segmento", "Nivel", "Usuarios", "Proporción", "Acción"],
           "action": "Acción", "motive": "Motivo", "profile_cols": ["", "Segmento", "Población"],
           "metrics": {"send_mean": "Envíos (media)", "open_rate": "Tasa de apertura (aperturas/envíos)",
                       "click_rate": "Clics por apertura", "bounce_rate": "Tasa de rebote (rebotes/envíos)",
                       "buyer_rate": "Compradores", "engagement_score_mean": "Compromiso (media)",
                       "engagement_score_median": "Compromiso (mediana)", "typical_hour": "Hora típica",
                       "typical_day": "Día típico", "silhouette_mean": "Silueta media (simplificada)"},
           "stability": "Estabilidad (Jaccard medio)", "quality": "Calidad de la segmentación",
           "q_cols": ["Medida", "Valor", "Lectura"], "sil": "Silueta (muestra estratificada)",
           "ch": "Calinski-Harabasz", "db": "Davies-Bouldin", "inertia": "Inercia",
           "ch_read": "más alto = grupos más separados", "db_read": "más bajo = mejor",
           "sil_read": [(0.7, "estructura fuerte"), (0.5, "estructura razonable"), (0.25, "estructura débil"),
                        (-2, "sin estructura clara")],
           "stab_read": {"high": "muy estable", "mid": "estable", "low": "inestable: interpretar con cautela"},
           "stab_note": "Jaccard medio de cada segmento con su mejor pareja al reajustar sobre remuestreos "
                        "bootstrap: < 0,6 inestable, 0,6–0,85 estable, > 0,85 muy estable.",
           "tech": "Detalles técnicos", "features": "Variables del modelo", "engine": "Motor", "iters": "Iteraciones",
           "seed": "Semilla", "timings": "Tiempos (s)", "outputs": "Ficheros generados", "step": "Paso",
           "seconds": "Segundos", "file": "Fichero", "what": "Contenido"},
    "en": {"title": "Mailing user segmentation", "generated": "Generated on {t}",
           "data": "Data analysed", "input": "Input file", "sha": "SHA-256", "month": "Month",
           "rows_in": "Rows read", "rows_kept": "Valid users", "rows_rejected": "Rows rejected",
           "rejects": "Rejects by reason", "reason": "Reason", "count": "Rows", "rejects_path": "Details in",
           "choice": "Choice of the number of segments (k)", "chosen": "Chosen k: {k}", "why": "Why",
           "k_cols": ["k", "inertia", "silhouette", "Calinski-Harabasz", "Davies-Bouldin", "sizes"],
           "segments": "Segments", "seg_cols": ["Segment", "Level", "Users", "Share", "Action"],
           "action": "Action", "motive": "Reason", "profile_cols": ["", "Segment", "Population"],
           "metrics": {"send_mean": "Sends (mean)", "open_rate": "Open rate (opens/sends)",
                       "click_rate": "Clicks per open", "bounce_rate": "Bounce rate (bounces/sends)",
                       "buyer_rate": "Buyers", "engagement_score_mean": "Engagement (mean)",
                       "engagement_score_median": "Engagement (median)", "typical_hour": "Typical hour",
                       "typical_day": "Typical day", "silhouette_mean": "Mean silhouette (simplified)"},
           "stability": "Stability (mean Jaccard)", "quality": "Segmentation quality",
           "q_cols": ["Measure", "Value", "Reading"], "sil": "Silhouette (stratified sample)",
           "ch": "Calinski-Harabasz", "db": "Davies-Bouldin", "inertia": "Inertia",
           "ch_read": "higher = better separated groups", "db_read": "lower = better",
           "sil_read": [(0.7, "strong structure"), (0.5, "reasonable structure"), (0.25, "weak structure"),
                        (-2, "no clear structure")],
           "stab_read": {"high": "highly stable", "mid": "stable", "low": "unstable: read with care"},
           "stab_note": "Mean Jaccard of each segment with its best match when refitted on bootstrap "
                        "resamples: < 0.6 unstable, 0.6–0.85 stable, > 0.85 highly stable.",
           "tech": "Technical details", "features": "Model features", "engine": "Engine", "iters": "Iterations",
           "seed": "Seed", "timings": "Timings (s)", "outputs": "Files written", "step": "Step",
           "seconds": "Seconds", "file": "File", "what": "Content"},
}
PERCENT = {"open_rate", "click_rate", "bounce_rate", "buyer_rate"}


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, digits: int, lang: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    text = f"{float(value):,.{digits}f}"
    return text.translate(str.maketrans(",.", ".,")) if lang == "es" else text


def _pct(value, lang: str, digits: int = 1) -> str:
    return "–" if value is None or not np.isfinite(value) else _num(100 * value, digits, lang) + " %"


def _table(headers: list, rows: list[list], numeric: set[int] = frozenset(), row_class=None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_class(i)}"' if row_class and row_class(i) else ""
        cells = "".join(f'<td{" class=n" if j in numeric else ""}>{_e(v)}</td>' for j, v in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(path, alt: str) -> str:
    data = base64.b64encode(as_location(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _metric(key: str, value, lang: str) -> str:
    if key in PERCENT:
        return _pct(value, lang)
    if key == "typical_hour":
        return "–" if not np.isfinite(value) else f"{int(value)}:00"
    if key == "typical_day":
        return "–" if not np.isfinite(value) else WEEKDAYS[lang][int(value)]
    return _num(value, 2 if key != "silhouette_mean" else 3, lang)


def _stability_reading(value, t: dict) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return t["stab_read"]["high" if value > 0.85 else "mid" if value >= 0.6 else "low"]


def _data_section(c: dict, t: dict, lang: str) -> str:
    rows = [[t["input"], c.get("input", "")], [t["sha"], c.get("input_sha256", "")], [t["month"], c.get("month", "")],
            [t["rows_in"], _num(c.get("rows_in"), 0, lang)], [t["rows_kept"], _num(c.get("rows_kept"), 0, lang)],
            [t["rows_rejected"], _num(c.get("rows_rejected"), 0, lang)]]
    out = f"<h2>{_e(t['data'])}</h2>" + _table(["", ""], rows)
    rejects = c.get("rejects_by_reason") or {}
    if rejects:
        out += f"<h3>{_e(t['rejects'])}</h3>" + _table([t["reason"], t["count"]], [
            [reason, _num(n, 0, lang)] for reason, n in rejects.items()], numeric={1})
        if c.get("rejects_path"):
            out += f'<p class="muted">{_e(t["rejects_path"])}: {_e(c["rejects_path"])}</p>'
    return out


def _k_section(c: dict, t: dict, lang: str, figures: dict) -> str:
    rows = []
    for r in sorted(c.get("k_table", []), key=lambda r: r["k"]):
        sizes = r.get("sizes") or []
        sizes = list(sizes.values()) if isinstance(sizes, dict) else list(sizes)
        rows.append([r["k"], _num(r.get("inertia"), 1, lang), _num(r.get("silhouette"), 3, lang),
                     _num(r.get("calinski_harabasz"), 1, lang), _num(r.get("davies_bouldin"), 3, lang),
                     ", ".join(str(int(s)) for s in sizes)])
    chosen = [i for i, r in enumerate(rows) if r[0] == c.get("k")]
    out = f"<h2>{_e(t['choice'])}</h2><p><strong>{_e(t['chosen'].format(k=c.get('k')))}</strong>. "
    out += f"{_e(t['why'])}: {_e(c.get('k_reason', ''))}</p>"
    out += _table(t["k_cols"], rows, numeric={1, 2, 3, 4}, row_class=lambda i: "chosen" if i in chosen else "")
    return out + "".join(_img(figures[n], n) for n in ("elbow", "k_quality") if n in figures)


def _segment_card(seg: dict, pop: dict, stability, t: dict, lang: str) -> str:
    level_class = "alta" if seg.get("nivel") in ("Alta", "High") else "baja"
    rows = [[label, _metric(key, seg.get(key, np.nan), lang), _metric(key, pop.get(key, np.nan), lang)]
            for key, label in t["metrics"].items()]
    return (f'<div class="card {level_class}"><h3>{_e(seg["nombre"])} <span class="badge">{_e(seg["nivel"])}</span>'
            f'</h3><p>{_num(seg["size"], 0, lang)} ({_pct(seg["share"], lang)}) · cluster {_e(seg["cluster"])}</p>'
            f'<p><strong>{_e(t["action"])}:</strong> {_e(seg["accion"])}<br><strong>{_e(t["motive"])}:</strong> '
            f'{_e(seg["motivo"])}<br><strong>{_e(t["stability"])}:</strong> {_num(stability, 2, lang)} '
            f'({_e(_stability_reading(stability, t))})</p>'
            + _table(t["profile_cols"], rows, numeric={1, 2}) + "</div>")


def _segments_section(c: dict, t: dict, lang: str, figures: dict) -> str:
    segs, pop, stability = c["segments"], c["population"], c.get("stability") or {}
    summary = [[s["nombre"], s["nivel"], _num(s["size"], 0, lang), _pct(s["share"], lang), s["accion_corta"]]
               for s in segs]
    out = f"<h2>{_e(t['segments'])}</h2>" + _table(t["seg_cols"], summary, numeric={2, 3})
    out += "".join(_img(figures[n], n) for n in ("segments", "profiles", "pca") if n in figures)
    stab = lambda s: stability.get(s["cluster"], stability.get(str(s["cluster"]), np.nan))
    return out + "".join(_segment_card(s, pop, stab(s), t, lang) for s in segs)


def _quality_section(c: dict, t: dict, lang: str, figures: dict) -> str:
    sil = c.get("silhouette", np.nan)
    reading = next((text for cut, text in t["sil_read"] if sil is not None and np.isfinite(sil) and sil > cut), "–")
    rows = [[t["sil"], _num(sil, 3, lang), reading], [t["ch"], _num(c.get("calinski_harabasz"), 1, lang), t["ch_read"]],
            [t["db"], _num(c.get("davies_bouldin"), 3, lang), t["db_read"]],
            [t["inertia"], _num(c.get("inertia"), 1, lang), ""]]
    out = f"<h2>{_e(t['quality'])}</h2>" + _table(t["q_cols"], rows, numeric={1})
    stability = c.get("stability") or {}
    stab_rows = [[s["nombre"], _num(stability.get(s["cluster"], stability.get(str(s["cluster"]), np.nan)), 2, lang),
                  _stability_reading(stability.get(s["cluster"], stability.get(str(s["cluster"]), np.nan)), t)]
                 for s in c["segments"]]
    out += f"<h3>{_e(t['stability'])}</h3><p class=muted>{_e(t['stab_note'])}</p>"
    out += _table([t["seg_cols"][0], "Jaccard", t["q_cols"][2]], stab_rows, numeric={1})
    return out + (_img(figures["silhouette"], "silhouette") if "silhouette" in figures else "")


def _tech_section(c: dict, t: dict, lang: str) -> str:
    rows = [[t["features"], ", ".join(c.get("features", []))], [t["engine"], c.get("engine", "")],
            [t["iters"], c.get("n_iter", "")], [t["seed"], c.get("seed", "")]]
    out = f"<h2>{_e(t['tech'])}</h2>" + _table(["", ""], rows)
    if c.get("timings"):
        out += f"<h3>{_e(t['timings'])}</h3>" + _table([t["step"], t["seconds"]], [
            [k, _num(v, 2, lang)] for k, v in c["timings"].items()], numeric={1})
    if c.get("outputs"):
        files = [[k, v] for k, v in c["outputs"].items()]
        out += f"<h3>{_e(t['outputs'])}</h3>" + _table([t["what"], t["file"]], files)
    return out


def write_report(path, context: dict) -> Path:
    """Render `context` (see report_context) to a self-contained HTML file, written atomically."""
    lang = check_lang(context.get("lang", "es"))
    t, figures = T[lang], context.get("figures") or {}
    title = f"{t['title']} — {context.get('month', '')}"
    # imported here, not at the top: outputs.changes builds on this module's helpers
    from mailseg_dist.outputs.changes import changes_section

    changes = changes_section(context["changes"], lang, figures) if context.get("changes") else ""
    body = (f"<h1>{_e(title)}</h1><p class=muted>{_e(t['generated'].format(t=context.get('generated_at', '')))}</p>"
            + _data_section(context, t, lang) + changes + _k_section(context, t, lang, figures)
            + _segments_section(context, t, lang, figures) + _quality_section(context, t, lang, figures)
            + _tech_section(context, t, lang))
    page = (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")
    write_text(path, page)
    return as_location(path)


def report_context(manifest: dict, model_result, segment_table: pd.DataFrame, figures: dict, cfg: dict,
                   lang: str | None = None, timings: dict | None = None, outputs: dict | None = None,
                   changes: dict | None = None) -> dict:
    """The report's inputs as plain values: manifest facts, k choice, segments, quality, run details."""
    r, lang = model_result, lang or cfg["report"]["lang"]
    segments = [{**segment_table.loc[c].to_dict(), "cluster": int(c)} for c in segment_table.index]
    keys = ("month", "source", "sha256", "rows_in", "rows_kept", "rows_rejected", "rejects_by_reason", "rejects_path")
    facts = {k: manifest.get(k) for k in keys}
    return {"lang": lang, "month": facts["month"], "input": facts["source"],
            "input_sha256": facts["sha256"], **{k: facts[k] for k in keys[3:]},
            "generated_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "k": r.k, "k_reason": k_reason_text(r.k_reason, lang), "k_table": r.k_table, "engine": r.engine,
            "features": r.feature_names,
            "n_iter": r.n_iter, "seed": cfg["model"]["seed"], "inertia": r.inertia, "silhouette": r.silhouette,
            "calinski_harabasz": r.calinski_harabasz, "davies_bouldin": r.davies_bouldin,
            "stability": dict(r.stability), "segments": segments,
            "population": {**population(segment_table).to_dict(), "nombre": POPULATION[lang]},
            "figures": dict(figures), "timings": dict(timings if timings is not None else r.timings),
            "outputs": {k: str(v) for k, v in (outputs or {}).items()}, "changes": changes}
